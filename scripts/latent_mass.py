#!/usr/bin/env python3
"""Where each continuous thought puts its value, summed over kinds of node, from `coconut analyze`.

For the first N questions of a ProsQA file and thoughts t = 0..K (t = 0: the position before the first
thought), the mean total value (the model's next-concept probability, renormalised over the graph's
concepts, as the page draws it) on: the two answer options, the frontier (the nodes one hop beyond
the t explored ones, the paper's latent-search frontier), the other nodes reachable from the person,
and the rest. A model that searches the graph puts its value on the frontier; one that guesses
between the options puts it on the options. Writes OUT.json and OUT.md.

Usage: scripts/latent_mass.py CHECKPOINT DATA.json OUT_PREFIX [N] [K]
"""
import json
import os
import sys

from coconut_cli import analyze, hops_from

ckpt, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 100
k = int(sys.argv[5]) if len(sys.argv) > 5 else 6
items = json.load(open(data))[:n]
kinds = ["options", "frontier", "reachable", "other"]
sums = [{kind: 0.0 for kind in kinds} for _ in range(k + 1)]
for it in items:
    a = analyze(ckpt, it["question"], k)
    reachable = {v for v, d in hops_from(a).items() if d > 0}
    options = set(a["options"])
    for step in a["steps"]:
        frontier = set(step["frontier"]) - options
        for v, p in enumerate(step["distribution"]):
            kind = "options" if v in options else "frontier" if v in frontier else "reachable" if v in reachable else "other"
            sums[step["t"]][kind] += p
rows = [{"thought": t, **{kind: s[kind] / len(items) for kind in kinds}} for t, s in enumerate(sums)]
json.dump({"checkpoint": ckpt, "data": data, "questions": len(items), "rows": rows}, open(out + ".json", "w"), indent=1)
with open(out + ".md", "w") as f:
    f.write(f"Mean value per thought by kind of node, {len(items)} questions of {os.path.basename(data)}, checkpoint {ckpt}\n\n")
    f.write("| thought | the two options | frontier (not an option) | other reachable | rest |\n|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| {r['thought']} | {r['options']:.3f} | {r['frontier']:.3f} | {r['reachable']:.3f} | {r['other']:.3f} |\n")
print(open(out + ".md").read())
