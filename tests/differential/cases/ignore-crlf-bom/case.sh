# a .dockerignore with a UTF-8 byte order mark and CRLF line ends (made here: git may rewrite them): the BOM is dropped, the \r trimmed, so first.txt and second.txt are ignored and third.txt re-included by !
printf '\357\273\277first.txt\r\nsecond.txt\r\nth*\r\n!third.txt\r\n' > .dockerignore
