# --build-arg NAME=busybox
ARGS=(--build-arg NAME=busybox)
