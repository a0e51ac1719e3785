use strict;
my $x = 3;
print "module 3: $x\n";
