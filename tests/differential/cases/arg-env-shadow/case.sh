# even a given build arg loses to ENV
ARGS=(--build-arg X=given)
