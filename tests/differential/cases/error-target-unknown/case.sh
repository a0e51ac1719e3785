# refused: no such target
ARGS=(--target nosuch)
EXPECT=fail
