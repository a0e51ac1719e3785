# ignored files cannot be named
EXPECT=fail
