use strict;
my $x = 2;
print "module 2: $x\n";
