# refused: no instructions
EXPECT=fail
