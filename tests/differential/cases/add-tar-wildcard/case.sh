# ADD with a wildcard that matches two archives: each is extracted into /x/; an archive inside an ADDed directory (d/inner.tar) is not extracted (one.tar is made with --mtime=@0 so its bytes are the same for both builds)
mkdir -p t1 t2 d && echo one > t1/one && echo two > t2/two
tar --mtime=@0 --sort=name --owner=0 --group=0 -cf one.tar -C t1 . && tar --owner=0 --group=0 -cf two.tar -C t2 . && cp one.tar d/inner.tar
rm -r t1 t2
