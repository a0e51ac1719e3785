# a tar inside a directory of the context, made reproducibly (it is copied byte for byte)
mkdir -p tree d && echo a > tree/a && echo p > d/plain
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar -cf d/inner.tar -C tree a
rm -r tree
