# a bzip2 tar
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && chmod 600 tree/a
tar -cjf t.tar.bz2 -C tree .
rm -r tree
