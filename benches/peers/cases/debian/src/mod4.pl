use strict;
my $x = 4;
print "module 4: $x\n";
