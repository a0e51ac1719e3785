# hard links in the context are copied as separate files
ln a b
mkdir -p sub && ln a sub/c
