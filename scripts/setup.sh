#!/usr/bin/env bash
# Installs, idempotently, what building, serving and testing need on a fresh Debian machine of this
# kind (see ../shared/TOOLCHAIN.md): Debian's rustc-web + std sources (wasm32 without rustup
# downloads) unless rustup already has the wasm32 target, a wasm linker, binaryen, Chromium +
# ChromeDriver, lavapipe (Vulkan on CPU), wasm-bindgen-cli at Cargo.lock's version, GPT-2's BPE
# files and the e2e test's npm packages.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"

pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  for p in rustc-web cargo-web rust-web-src; do have_pkg "$p" || pkgs+=("$p"); done
fi
# xz-utils + binutils: scripts/gpu-run packs a stripped, compressed binary (its dry run is a test).
for p in lld binaryen chromium chromium-driver mesa-vulkan-drivers xz-utils binutils; do have_pkg "$p" || pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: apt-get install ${pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

wb="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/"/, "", $3); print $3; exit}' Cargo.lock)"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb"; then
  echo "setup: cargo install wasm-bindgen-cli $wb (about 10-25 minutes, once)"
  # Not --locked: its lock file pins a webpki-roots release that crates.io no longer serves.
  cargo install wasm-bindgen-cli --version "$wb" --quiet
fi

scripts/fetch-gpt2-bpe.sh >/dev/null
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
fi
echo "setup: ok"
