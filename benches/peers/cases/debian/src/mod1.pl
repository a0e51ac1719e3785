use strict;
my $x = 1;
print "module 1: $x\n";
