# a plain tar, extracted with --chown
mkdir -p tree/sub && echo a > tree/a && echo b > tree/sub/b && chmod 600 tree/a
tar -cf t.tar -C tree .
rm -r tree
