# refused: FROM with no image
EXPECT=fail
