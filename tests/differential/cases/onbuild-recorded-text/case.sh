# build the parent only
ARGS=(--target parent)
