# --build-arg X=1 without ARG X
ARGS=(--build-arg X=1)
