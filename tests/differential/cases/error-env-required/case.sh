# refused: ${unset:?message}
EXPECT=fail
