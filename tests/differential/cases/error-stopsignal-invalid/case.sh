# refused: no such signal
EXPECT=fail
