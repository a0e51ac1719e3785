# --build-arg V=given
ARGS=(--build-arg V=given)
