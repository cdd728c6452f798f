#!/usr/bin/env python3
"""Latent-search aggregate (the paper's Section 5 analysis) from `coconut analyze`.

For the first N questions of a ProsQA file, runs `coconut analyze --k K` and, for thoughts t = 1..K,
groups the *frontier* nodes (one hop beyond the t explored ones) by their height (shortest distance to
a leaf) and averages their values (the model's probability that the node is the next concept, renormalised
over the graph), as in the paper's value-vs-height analysis of the latent search. Writes a JSON, a
Markdown table and an SVG (mean value vs height, one line per thought).

Usage: scripts/latent_search.py CHECKPOINT DATA.json OUT_PREFIX [N] [K]
"""
import json
import os
import sys
from collections import defaultdict

from coconut_cli import analyze

ckpt, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 50
k = int(sys.argv[5]) if len(sys.argv) > 5 else 2
items = json.load(open(data))[:n]
sums = defaultdict(lambda: [0.0, 0])  # (t, height) -> [sum, count]
for it in items:
    a = analyze(ckpt, it["question"], k)
    for step in a["steps"][1:]:
        for v in step["frontier"]:
            s = sums[(step["t"], a["heights"][v])]
            s[0] += step["distribution"][v]
            s[1] += 1
rows = sorted((t, h, s / c, c) for (t, h), (s, c) in sums.items())
json.dump([{"thought": t, "height": h, "mean_value": m, "nodes": c} for t, h, m, c in rows], open(out + ".json", "w"), indent=1)
with open(out + ".md", "w") as f:
    f.write(f"Frontier nodes' mean value by height, {len(items)} questions of {os.path.basename(data)}, checkpoint {ckpt}\n\n")
    f.write("| thought | height | mean value | frontier nodes |\n|---|---|---|---|\n")
    for t, h, m, c in rows:
        f.write(f"| {t} | {h} | {m:.4f} | {c} |\n")
# SVG: mean value vs height, one polyline per thought.
W, H, P = 520, 300, 44
hs = sorted({h for _, h, _, _ in rows})
top = max(m for _, _, m, _ in rows) * 1.1 or 1.0
x = lambda h: P + (W - 2 * P) * (hs.index(h) / max(len(hs) - 1, 1))
y = lambda m: H - P - (H - 2 * P) * m / top
colours = ["#c4620f", "#2b6cb0", "#1f7a3a", "#7a3da8", "#a30000", "#555"]
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/><line x1="{P}" y1="{P}" x2="{P}" y2="{H-P}" stroke="black"/>',
         f'<text x="{W/2}" y="{H-8}" text-anchor="middle">node height (shortest distance to a leaf)</text>',
         f'<text x="8" y="{P-12}">mean value of frontier nodes (max {top:.3f})</text>']
for h in hs:
    parts.append(f'<text x="{x(h):.1f}" y="{H-P+14}" text-anchor="middle">{h}</text>')
for i, t in enumerate(sorted({t for t, _, _, _ in rows})):
    pts = " ".join(f"{x(h):.1f},{y(m):.1f}" for tt, h, m, _ in rows if tt == t)
    c = colours[i % len(colours)]
    parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
    parts.append(f'<text x="{W-P-70}" y="{P+14*i}" fill="{c}">thought {t}</text>')
parts.append("</svg>")
open(out + ".svg", "w").write("\n".join(parts))
print(open(out + ".md").read())
