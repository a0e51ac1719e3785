# b gets mode 600
chmod 600 b
