#!/usr/bin/env bash
# Builds the page into dist/: the wasm module (profile `wasm`), its JS glue (wasm-bindgen), index.html,
# static/ and the stack-check model. Uses an installed wasm32 std when rustup has one, else Debian's
# rustc-web with -Zbuild-std (see ../shared/TOOLCHAIN.md). The wasm target dir is kept apart from
# the native one so the two compilers never invalidate each other.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}/wasm"
profile=wasm
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  cargo build --profile "$profile" --target wasm32-unknown-unknown -p coconut-web --target-dir "$target_dir"
else
  linker="$(command -v wasm-ld || command -v rust-lld || true)"
  if [ -z "$linker" ]; then
    linker="$(find "$HOME/.rustup/toolchains" -name rust-lld -type f 2>/dev/null | head -n1)"
  fi
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust ] || { echo "wasm32 std missing: run scripts/setup.sh" >&2; exit 1; }
  [ -n "$linker" ] || { echo "no wasm linker (wasm-ld / rust-lld): run scripts/setup.sh" >&2; exit 1; }
  env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
    /usr/bin/cargo build -Zbuild-std=std,panic_abort --profile "$profile" \
      --target wasm32-unknown-unknown -p coconut-web --target-dir "$target_dir"
fi
wasm="$target_dir/wasm32-unknown-unknown/$profile/coconut_web.wasm"
rm -rf dist && mkdir -p dist/static/smoke
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir dist/pkg "$wasm"
cp index.html dist/
cp -r static/. dist/static/
cp tests/fixtures/gpt2-tiny/{config.json,model.safetensors,tokenizer.json} dist/static/smoke/
cp tests/fixtures/gpt2-tiny-expected.json dist/static/smoke/expected.json
ls -l dist/pkg/coconut_web_bg.wasm | awk '{printf "coconut_web_bg.wasm: %.1f MB\n", $5/1e6}'
