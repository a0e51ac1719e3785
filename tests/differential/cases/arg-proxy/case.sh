# --build-arg HTTP_PROXY
ARGS=(--build-arg HTTP_PROXY=http://proxy.invalid:3128)
