# a directory copied to a path that is a regular file of the image: both refuse ("cannot copy to non-directory")
EXPECT=fail
