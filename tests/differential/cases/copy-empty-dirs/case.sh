# empty directories (git cannot keep them)
mkdir -p empty deep/er/est
