# the Dockerfile rewritten with CRLF line endings (git could normalise them)
sed -i "s/\$/\r/" Dockerfile
