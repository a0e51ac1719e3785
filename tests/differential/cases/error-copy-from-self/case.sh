# refused: a stage copying from itself
EXPECT=fail
