# an xz tar
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && chmod 600 tree/a
tar -cJf t.tar.xz -C tree .
rm -r tree
