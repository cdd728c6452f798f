#!/bin/sh
# Samples/s of the flagship recipe with the fused CPU ops and with `--unfused` (Burn's op chains),
# alternating, twice each, 45 s of real training each (2 workers, the length-window configs: the
# search stage's small graphs and full-size CoT questions).
# From the repository root: benchmarks/fused-ops/run.sh  (pause other training first)
set -e
out=benchmarks/fused-ops
for round in 1 2; do
  for c in small-w32 full-w32; do
    for mode in fused unfused; do
      flag=""; [ $mode = unfused ] && flag="--unfused"
      rm -rf runs/fused-ops/$c-$mode
      target/release/coconut $flag train --config benchmarks/length-window/$c.toml --out runs/fused-ops/$c-$mode --time-budget 45 >/dev/null 2>&1
      cp runs/fused-ops/$c-$mode/metrics.jsonl $out/$c-$mode-$round.metrics.jsonl
      python3 -c "import json; r=[json.loads(l) for l in open('$out/$c-$mode-$round.metrics.jsonl') if 'samples_per_s' in l][1:]; print('round $round $c $mode', round(sum(x['samples_per_s'] for x in r)/len(r), 1), 'samples/s over', len(r), 'windows')"
    done
  done
done
