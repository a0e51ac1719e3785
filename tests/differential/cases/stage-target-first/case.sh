# target the first stage
ARGS=(--target first)
