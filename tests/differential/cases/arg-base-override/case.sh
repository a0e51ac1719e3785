# --build-arg overrides a global ARG used in FROM (the default names no image)
ARGS=(--build-arg BASE=busybox)
