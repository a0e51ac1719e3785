# refused: EXPOSE of something that is no port
EXPECT=fail
