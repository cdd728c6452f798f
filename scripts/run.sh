#!/usr/bin/env bash
# The main job: set up, show what `cargo run --release` trains, build the page and serve it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
port="${PORT:-8080}"
scripts/setup.sh
cargo run --release
scripts/build-web.sh
echo "serving the page at http://localhost:$port/ (Ctrl-C stops)"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory dist
