# refused: the destination directory would be a file of the image
EXPECT=fail
