#!/bin/sh
# Samples/s of the flagship recipe with random batches (w0) and batches of similar length (w32),
# on the search stage's small graphs and on full-size CoT questions: 60 s of training each, 2 workers.
# From the repository root: benchmarks/length-window/run.sh  (pause other training first)
set -e
for c in small-w0 small-w32 full-w0 full-w32; do
  rm -rf runs/length-window/$c
  target/release/coconut train --config benchmarks/length-window/$c.toml --out runs/length-window/$c --time-budget 60 >/dev/null
  python3 -c "import json,sys; r=[json.loads(l) for l in open('runs/length-window/$c/metrics.jsonl') if 'samples_per_s' in l][1:]; print('$c', round(sum(x['samples_per_s'] for x in r)/len(r), 1), 'samples/s over', len(r), 'windows')"
done
