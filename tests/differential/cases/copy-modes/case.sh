# modes git cannot keep
chmod 600 secret
chmod 755 tool
chmod 4755 suid
chmod 700 d
