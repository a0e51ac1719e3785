# --build-arg D=given
ARGS=(--build-arg D=given)
