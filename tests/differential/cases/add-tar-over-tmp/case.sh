# an archive that holds tmp/ with mode 755
mkdir -p tree/tmp && echo x > tree/tmp/x && chmod 755 tree/tmp
tar -cf t.tar -C tree .
rm -r tree
