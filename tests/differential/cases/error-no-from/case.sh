# refused
EXPECT=fail
