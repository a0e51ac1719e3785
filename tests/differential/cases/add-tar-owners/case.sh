# an archive of files owned by 1000:1000
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && chmod 600 tree/a
tar --owner=1000 --group=1000 --numeric-owner -cf t.tar -C tree .
rm -r tree
