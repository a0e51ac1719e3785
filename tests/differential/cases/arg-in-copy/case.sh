# F=b given
ARGS=(--build-arg F=b)
