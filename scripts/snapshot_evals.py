#!/usr/bin/env python3
"""Accuracy of a run's end-of-epoch checkpoints on one question file, each at its stage's thoughts.

Reads DIR/epoch-N (the model after N epochs: a run's `epochs/`, written with `run.keep_epochs = true`) and the
run's config.toml for the stage schedule (search epochs, epochs per stage, max stage), evaluates each
with `coconut eval` (k = the stage's thoughts, padded to max; CoT for the search epochs and stage 0),
and writes OUT.json and OUT.md.

Usage: scripts/snapshot_evals.py RUN_DIR RUN_DIR/epochs DATA.json OUT_PREFIX
"""
import json
import os
import re
import sys
import tomllib

from coconut_cli import run_json

run, snaps, data, out = sys.argv[1:5]
cfg = tomllib.load(open(os.path.join(run, "config.toml"), "rb"))
search = cfg["data"].get("search_epochs", 0)
per_stage = cfg["curriculum"].get("epochs_per_stage", 5)
max_stage = cfg["curriculum"].get("max_latent_stage", 6)
variant = cfg["curriculum"].get("variant", "coconut")
rows = []
for name in sorted(os.listdir(snaps), key=lambda n: int(re.sub(r"\D", "", n) or 0)):
    done = int(re.sub(r"\D", "", name))
    epoch = done - 1
    stage = max(epoch - search, 0) // per_stage if epoch >= search else 0
    k = min(stage, max_stage) if variant == "coconut" else 0
    method = "cot" if epoch < search else variant
    report = run_json("eval", "--checkpoint", os.path.join(snaps, name), "--method", method, "--k", str(k), "--data", data)
    rows.append({"epochs": done, "stage": "search" if epoch < search else stage, "k": k, "method": method,
                 "accuracy": report["accuracy"], "categories": report["categories"]})
json.dump(rows, open(out + ".json", "w"), indent=1)
md = ["| epochs done | stage | method, k | accuracy | correct path | correct label |", "|---|---|---|---|---|---|"]
for r in rows:
    c = r["categories"]
    md.append(f"| {r['epochs']} | {r['stage']} | {r['method']}, {r['k']} | {100 * r['accuracy']:.1f}% | {c.get('correct_path', 0)} | {c.get('correct_label', 0)} |")
open(out + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
