# a gzip of a file that is no tar, made reproducibly (-n: no name, no time)
echo 'just text' > text && gzip -n -9 text && echo 'bz text' > btext && bzip2 btext
