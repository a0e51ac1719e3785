#!/bin/sh
# Generate the node_modules-like context into DIR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/gen_context.py" "$1" --packages "${CTX_PACKAGES:-680}"
