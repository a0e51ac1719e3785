# the JSON form still goes through quote and variable processing: an unmatched single quote in a source name is an error for both
EXPECT=fail
