# an archive with file entries only (no entries for their directories, no ./ entry): the missing parents are created 0755 0:0, and extracting into /tmp keeps it 1777
mkdir -p p/q/r && echo f > p/q/r/f && echo g > p/g
tar --owner=0 --group=0 --no-recursion -cf t.tar p/q/r/f p/g
rm -r p
