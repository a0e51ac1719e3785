echo "v=$V" > /out
