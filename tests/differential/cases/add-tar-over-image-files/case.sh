# an archive extracted over existing image files: a file replaces a file (its mode too), a file replaces a symlink, untouched files stay, directories merge
mkdir -p tree/dir && echo new > tree/file && chmod 644 tree/file && echo l > tree/link && echo n > tree/dir/new
tar --sort=name --owner=0 --group=0 -cf t.tar -C tree file link dir/new
rm -r tree
