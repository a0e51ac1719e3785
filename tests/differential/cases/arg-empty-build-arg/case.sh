# --build-arg E= gives the ARG an empty value, overriding its default
ARGS=(--build-arg E= --build-arg L=x=y)
