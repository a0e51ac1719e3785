# FROM with an ARG that expands to nothing is refused
EXPECT=fail
