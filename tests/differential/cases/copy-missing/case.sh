# a missing source is an error
EXPECT=fail
