# a tar replacing /etc/passwd, adding /etc/new and /tmp/t, with root-owned entries and etc/ 0700
mkdir -p tree/etc tree/tmp && printf 'root:x:0:0:root:/root:/bin/sh\n' > tree/etc/passwd && echo n > tree/etc/new && echo t > tree/tmp/t && chmod 700 tree/etc
tar --owner=0 --group=0 --numeric-owner -cf t.tar -C tree etc/passwd etc/new tmp/t
rm -r tree
