# a plain tar made here (root-owned entries)
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b
tar --owner=0 --group=0 --numeric-owner -cf t.tar -C tree .
rm -r tree
