# refused: unknown flag
EXPECT=fail
