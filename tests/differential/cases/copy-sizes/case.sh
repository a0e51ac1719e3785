# an empty file, a one-byte file with no newline, and a 3 MiB file of deterministic content
: > empty
printf x > one
head -c 3145728 /dev/zero | tr '\0' r > big
