#!/usr/bin/env bash
# Every test: native (model parity with HuggingFace, tokenizers, checkpoints, CLI, wgpu on lavapipe,
# the GPU script's CPU dry run), the cuda feature type-checked,
# the wasm build, and the page in headless Chromium with WebGPU (SwiftShader) and without.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
cargo test --release --workspace --exclude coconut-web
# The cuda feature cannot rot: type-checked with DOCS_RS=1, which lets cubecl-llvm's build script skip
# LLVM (building the binary needs scripts/setup-cuda; README). Its own target folder keeps the cache apart.
DOCS_RS=1 CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/cuda-check" cargo check -p coconut-cli --features cuda
scripts/build-web
node --test --test-concurrency=1 tests/e2e/
