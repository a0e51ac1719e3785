# a context with a 40-level deep tree (path over 255 bytes), a 200-character file name and a 255-character one, and 300 small files in one directory
p=deep; for i in $(seq 40); do p=$p/level$i; done; mkdir -p "$p" && echo bottom > "$p/bottom.txt"
n200=$(printf 'n%.0s' $(seq 196)).txt; echo two-hundred > "$n200"
n255=$(printf 'm%.0s' $(seq 255)); mkdir -p long && echo max > "long/$n255"
mkdir -p many && for i in $(seq 300); do echo "$i" > "many/f$i"; done
