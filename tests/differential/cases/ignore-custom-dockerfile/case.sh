# -f build/app.Dockerfile where build/ and Dockerfile are both in .dockerignore: the Dockerfile given by -f is still read, and neither is in the copied context
ARGS=(-f build/app.Dockerfile)
