# a gzip tar
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && chmod 600 tree/a
tar -czf t.tar.gz -C tree .
rm -r tree
