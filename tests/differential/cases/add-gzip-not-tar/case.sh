# gzip of a file that is not a tar (a.gz, b.tar.gz): not extracted, copied as is, still compressed (BuildKit v0.8 and current: isArchivePath needs a first tar header after decompression)
echo plain > a && gzip -n -c a > a.gz && echo other > b && gzip -n -c b > b.tar.gz && rm a b
