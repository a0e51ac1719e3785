use strict;
my $x = 5;
print "module 5: $x\n";
