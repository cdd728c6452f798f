#!/bin/sh
# One-thread training samples/s (stages 0 / 3 / 6) of two coconut binaries, alternated twice, on the
# page's shape (batch 8, AdamW) and the flagship's (batch 16, Muon, frontier term): `coconut bench`
# without the reference. Pause other training first.
# From the repository root: benchmarks/cpu-step/run.sh OLD_BINARY NEW_BINARY NAME
set -e
old=$1 new=$2 name=$3
out=benchmarks/cpu-step/$name
mkdir -p "$out"
for round in 1 2; do
  for side in old new; do
    bin=$old; [ $side = new ] && bin=$new
    for c in page flagship; do
      RAYON_NUM_THREADS=1 "$bin" --devices 1 bench --config $c --train-steps 8 --questions 2 --json "$out/$c-$side-$round.json" >/dev/null 2>&1
      python3 -c "import json; d=json.load(open('$out/$c-$side-$round.json')); t=d['train_samples_per_s']; print('round $round $side $c', ' / '.join('%.1f' % t[s] for s in ('stage0','stage3','stage6')))"
    done
  done
done
