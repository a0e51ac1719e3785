# pick the stage by build arg
ARGS=(--build-arg VARIANT=b)
