# refused: ONBUILD FROM
EXPECT=fail
