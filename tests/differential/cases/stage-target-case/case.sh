# --target matches a stage name case-insensitively (--target BUILD for AS Build)
ARGS=(--target BUILD)
