#!/bin/sh
# Where a one-thread training step's time goes, for binaries compared under this VM's speed swings:
# `perf record` of `coconut bench --config page` at 1 thread, cut to the one-thread training window
# (stages 0, 3, 6), each kernel's share of its samples, and the step and the attention kernels
# counted in GEMM micro-kernel samples (GEMM's work is the same in both binaries, so the ratio to it
# does not move when the whole machine slows). Each binary twice, alternated; nothing else running.
# From the repository root: benchmarks/cpu-step/profile.sh OLD_BINARY NEW_BINARY NAME [CONFIG]
set -e
old=$1 new=$2 name=$3 config=${4:-page}
out=benchmarks/cpu-step/$name
mkdir -p "$out"
for round in 1 2; do
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    data=$(mktemp /tmp/coconut-profile-XXXXXX.data)
    RAYON_NUM_THREADS=1 perf record -q -F 499 -o "$data" "$bin" --devices 1 bench --config "$config" --train-steps 8 --questions 2 --json "$out/profile-$config-$side-$round.json" >/dev/null 2>&1
    perf script -i "$data" -F tid,time,ip,sym 2>/dev/null | python3 benchmarks/cpu-step/profile_shares.py "$config $side $round" | tee "$out/profile-$config-$side-$round.txt"
    rm -f "$data"
  done
done
