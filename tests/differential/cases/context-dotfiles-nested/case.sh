# COPY . of a context with dot-directories at several depths (.git, made here since git cannot store one; a/.cache/b), dotfiles named ..x and .-, and a .dockerignore that only drops *.swp
mkdir -p .git/objects && echo h > .git/HEAD && echo o > .git/objects/o
