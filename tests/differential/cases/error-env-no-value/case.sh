# ENV with a name and no value is refused
EXPECT=fail
