# a UTF-8 byte order mark put before the first line
printf "\xef\xbb\xbf" | cat - Dockerfile > D && mv D Dockerfile
