# refused: a directory cannot replace a file
EXPECT=fail
