# STOPSIGNAL with a name that is no signal is refused
EXPECT=fail
