# an archive holding a hard link, relative and absolute symlinks, a dangling link and modes 4755/0700/0777: extracted as written (the hard link stays one)
mkdir -p tree/sub tree/priv && echo a > tree/a && ln tree/a tree/sub/hard && ln -s a tree/rel && ln -s /etc/passwd tree/abs && ln -s missing tree/dangling
echo s > tree/suid && chmod 4755 tree/suid && chmod 700 tree/priv && echo o > tree/open && chmod 777 tree/open
tar --sort=name --owner=0 --group=0 -cf t.tar -C tree .
rm -r tree
