# a .dockerignore with CRLF line endings and trailing spaces (written here: git may normalise them)
printf "a\r\n  b  \r\n" > .dockerignore
