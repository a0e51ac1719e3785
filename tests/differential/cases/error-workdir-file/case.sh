# refused: WORKDIR on a path that is a file
EXPECT=fail
