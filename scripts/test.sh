#!/usr/bin/env bash
# Every test: native (model parity with HuggingFace, tokenizers, checkpoints, CLI, wgpu on lavapipe),
# the wasm build, and the page in headless Chromium with WebGPU (SwiftShader) and without.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo test --release --workspace --exclude coconut-web
scripts/build-web
node --test --test-concurrency=1 tests/e2e/
