# an archive with a 0700 directory, a setuid file and a 0600 file, root-owned
mkdir -p tree/priv tree/pub && echo s > tree/pub/suid && chmod 4755 tree/pub/suid && echo p > tree/priv/p && chmod 600 tree/priv/p && chmod 700 tree/priv
tar --owner=0 --group=0 --numeric-owner -cf t.tar -C tree .
rm -r tree
