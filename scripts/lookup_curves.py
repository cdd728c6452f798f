#!/usr/bin/env python3
"""The official-size lookup under dense supervision as a picture: for each arm in results/dense-lookup/
(`ARM-epoch-N-listing-full9001.json`, written by `coconut probe lookup --listing --json`), the first
lookup's probability on X's children against the listings trained (N epochs of 5,000), with uniform
guessing as a dashed line. Writes OUT.svg.

usage: scripts/lookup_curves.py [DIR] [OUT_PREFIX]
"""
import glob
import json
import os
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "results/dense-lookup"
out = sys.argv[2] if len(sys.argv) > 2 else f"{src}/curves"
per_epoch = 5000
arms = {}
uniform = []
for path in glob.glob(f"{src}/*-epoch-*-listing-full9001.json"):
    m = re.match(r"(.+)-epoch-(\d+)-listing-full9001\.json", os.path.basename(path))
    p = json.load(open(path))
    arms.setdefault(m.group(1), []).append((int(m.group(2)) * per_epoch, 100 * p["first_lookup"]["mass"]["child"]))
    uniform.append(100 * p["first_lookup"]["uniform"]["child"])
start = json.load(open(f"{src}/cot55-start-listing-full9001.json")) if os.path.exists(f"{src}/cot55-start-listing-full9001.json") else None

W, H, L, R, T, B = 640, 360, 60, 190, 20, 50
most = max((a for pts in arms.values() for a, _ in pts), default=0)
step = 5000 if most <= 40000 else 25000
xmax, ymax = max(30000, -(-most // step) * step), 40.0
x = lambda v: L + (W - L - R) * v / xmax
y = lambda v: T + (H - T - B) * (1 - v / ymax)
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
for v in range(0, int(ymax) + 1, 10):
    svg.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v)}" y2="{y(v)}" stroke="#ddd"/><text x="{L - 6}" y="{y(v) + 4}" text-anchor="end">{v}%</text>')
for v in range(0, xmax + 1, step):
    svg.append(f'<text x="{x(v)}" y="{H - B + 16}" text-anchor="middle">{v // 1000}k</text>')
svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">search listings trained (official size)</text>')
svg.append(f'<text transform="translate(14,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">first lookup on X\'s children</text>')
if uniform:
    u = sum(uniform) / len(uniform)
    svg.append(f'<line x1="{x(0)}" x2="{x(xmax)}" y1="{y(u)}" y2="{y(u)}" stroke="#888" stroke-dasharray="4 3"/>')
    svg.append(f'<text x="{W - R + 6}" y="{y(u) + 4}" fill="#888">uniform {u:.1f}%</text>')
for i, (arm, pts) in enumerate(sorted(arms.items())):
    pts = sorted(pts)
    if start is not None:
        pts = [(0, 100 * start["first_lookup"]["mass"]["child"])] + pts
    c = colors[i % len(colors)]
    svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{" ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts)}"/>')
    svg += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="3" fill="{c}"/>' for a, b in pts]
    svg.append(f'<text x="{W - R + 6}" y="{T + 14 + 16 * i}" fill="{c}">{arm}</text>')
svg.append("</svg>")
open(f"{out}.svg", "w").write("\n".join(svg))
print(f"{out}.svg: {len(arms)} arms")
