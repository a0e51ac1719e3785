# archives are recognised by their content, not their name: a gzip tar named blob, a plain tar named plaintar and a bzip2 tar named bz are all extracted
mkdir -p tree && echo a > tree/a && echo b > tree/b
tar --owner=0 --group=0 -czf blob -C tree . && tar --owner=0 --group=0 -cf plaintar -C tree a && tar --owner=0 --group=0 -cjf bz -C tree b
rm -r tree
