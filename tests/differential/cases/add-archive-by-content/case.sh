# a gzip tar named data.bin, a plain tar named noext
mkdir -p tree && echo a > tree/a
tar --owner=0 --group=0 --numeric-owner -czf data.bin -C tree . && tar --owner=0 --group=0 --numeric-owner -cf noext -C tree .
rm -r tree
