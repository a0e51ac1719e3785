# refused: a bad duration
EXPECT=fail
