use strict;
my $x = 6;
print "module 6: $x\n";
