# a RUN under USER name:group with a group /etc/group lacks fails
EXPECT=fail
