# --label from the command line
ARGS=(--label cli=flag --label a=cli)
