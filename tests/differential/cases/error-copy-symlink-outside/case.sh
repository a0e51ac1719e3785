# a source symlink pointing out of the context resolves inside it and finds nothing
EXPECT=fail
