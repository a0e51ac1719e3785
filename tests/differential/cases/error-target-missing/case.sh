# --target naming no stage is refused
ARGS=(--target nosuch)
EXPECT=fail
