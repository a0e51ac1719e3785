# refused: RUN as a user name /etc/passwd does not have
EXPECT=fail
