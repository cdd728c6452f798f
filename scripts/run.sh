#!/usr/bin/env bash
# The main job: set up, build the page and serve it on http://localhost:$PORT/ (default 8080).
# (`cargo run --release` is the other main job: it trains the default Coconut run.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
port="${PORT:-8080}"
scripts/setup.sh
scripts/build-web
echo "serving the page at http://localhost:$port/ (Ctrl-C stops); \`cargo run --release\` trains the default Coconut run"
exec python3 -m http.server "$port" --bind 127.0.0.1 --directory dist
