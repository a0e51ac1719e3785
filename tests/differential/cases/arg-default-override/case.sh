# --build-arg A=given
ARGS=(--build-arg A=given)
