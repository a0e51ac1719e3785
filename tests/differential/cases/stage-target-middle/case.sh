# target two
ARGS=(--target two)
