# --build-arg E= (empty) and --build-arg with spaces
ARGS=(--build-arg E= --build-arg S="two words")
