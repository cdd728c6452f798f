#!/usr/bin/env python3
"""The flagship's learning curve as a picture: accuracy against training wall time.

Reads the run's metrics.jsonl (validation accuracy on 200 generated full-size questions after every
epoch, with the run's elapsed seconds and learning rate) and results/flagship/<run name>.jsonl (the kept
epoch models on four generated sets: scripts/flagship-curve), and writes OUT.svg with the curriculum's
phases shaded (recall and search stages, stages 0-6, graph growth or the final stage, learning-rate decay). With
COMPARE_RUN_DIR, that run's official-size curve (seed 9001) is drawn dashed on the same axes, by
curriculum epoch (each run's recall epochs set aside) placed at this run's hours where this run has them.

Usage: scripts/flagship_curve_plot.py [RUN_DIR] [OUT_PREFIX] [COMPARE_RUN_DIR]
"""
import json
import sys
import tomllib

import os

run = sys.argv[1] if len(sys.argv) > 1 else "runs/prosqa-recall-frontier-coconut"
out = sys.argv[2] if len(sys.argv) > 2 else f"results/flagship/{os.path.basename(run)}"
compare = sys.argv[3] if len(sys.argv) > 3 else None
cfg = tomllib.load(open(f"{run}/config.toml", "rb"))
# A run started from another's model (run.init) at run.start_epoch: its clock starts there.
start = cfg["run"].get("start_epoch", 0) if cfg["run"].get("init") else 0
hours = {start: 0.0}  # epochs done -> hours of training
val = []
for line in open(f"{run}/metrics.jsonl"):
    m = json.loads(line)
    if "val_accuracy" in m:
        hours[m["epoch"] + 1] = m["time_s"] / 3600
        val.append((m["epoch"] + 1, m["val_accuracy"]))
curve_of = lambda r: [json.loads(line) for line in open(f"results/flagship/{os.path.basename(r)}.jsonl")]
curve = sorted((c for c in curve_of(run) if c["epoch"] in hours), key=lambda c: c["epoch"])

W, H, L, B, T, R = 900, 380, 50, 44, 30, 230
tmax = max(hours.values()) or 1
x = lambda h: L + (W - L - R) * h / tmax
y = lambda a: H - B - (H - B - T) * a
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
# Phases by epoch, from the config.
d, c, o = cfg["data"], cfg["curriculum"], cfg["optim"]
recall = d.get("recall_epochs", 0)
search = recall + d.get("search_epochs", 0)
decay_from = cfg["run"]["epochs"] - o.get("decay_epochs", 0)
# A run trained on past its first end (scripts/extend-run): the rate jumps back up there; the first decay
# ran over the decay_epochs before that epoch, the new stretch runs at the new rate until its own decay.
lrs = [(m["epoch"], m["lr"]) for m in map(json.loads, open(f"{run}/metrics.jsonl")) if "lr" in m]
extended = max((e for (_, a), (e, b) in zip(lrs, lrs[1:]) if b > 1.5 * a), default=None)  # the last rise
if extended is None or not o.get("decay_epochs", 0) <= extended < decay_from:
    extended = None
first_end = extended - o.get("decay_epochs", 0) if extended is not None else decay_from
phases = [(0, recall, "#fbeaea", "recall"), (recall, search, "#fdf6e3", "search")]
if "graph_warmup" in d:
    grow_from = search + d["graph_warmup"]["hold_epochs"]
    grow_to = search + d["graph_warmup"]["epochs"]
    phases += [(search, grow_from, "#eef6ee", "stages 0-6, small graphs"), (grow_from, grow_to, "#fff0e0", "graphs grow"),
               (grow_to, first_end, "#eef2fa", "full size, lr 1e-3")]
else:
    latent_to = search + c.get("epochs_per_stage", 1) * (c.get("max_latent_stage", 0) + 1)
    phases += [(search, latent_to, "#eef6ee", "stages 0-6"), (latent_to, first_end, "#eef2fa", "final stage, lr 1e-3")]
if extended is not None:
    mix = f", stage mix {c['uniform_prob']}" if c.get("uniform_prob", 0) > 0 else ""
    phases += [(first_end, extended, "#f3eefa", "lr decays"), (extended, decay_from, "#eaf6f6", f"lr {o['lr']:g}{mix}")]
phases.append((decay_from, cfg["run"]["epochs"], "#f3eefa", "lr decays"))
done, narrow = max(hours), 0
for a, b, fill, name in phases:
    a = max(a, start)
    if a >= done or a >= b:
        continue
    x0, x1 = x(hours[a]), x(hours[min(b, done)])
    parts.append(f'<rect x="{x0:.1f}" y="{T}" width="{max(x1 - x0, 0):.1f}" height="{H - B - T}" fill="{fill}"/>')
    narrow = narrow + 1 if x1 - x0 < 70 else 0  # narrow neighbours' labels alternate between two rows
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{T - 6 if narrow % 2 == 0 else T + 10}" text-anchor="middle" fill="#555" font-size="9">{name}</text>')
for a in [0, 0.25, 0.5, 0.75, 1.0]:
    parts.append(f'<line x1="{L}" x2="{W - R}" y1="{y(a)}" y2="{y(a)}" stroke="#ddd"/>')
    parts.append(f'<text x="{L - 6}" y="{y(a) + 4}" text-anchor="end">{int(a * 100)}%</text>')
for h in range(int(tmax) + 1):
    parts.append(f'<text x="{x(h)}" y="{H - B + 16}" text-anchor="middle">{h}</text>')
parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">training wall time, hours (2 CPU cores)</text>')
parts.append(f'<text x="12" y="{(T + H - B) / 2}" transform="rotate(-90 12 {(T + H - B) / 2})" text-anchor="middle">answer accuracy (k = {0 if cfg.get("curriculum", {}).get("variant") in ("cot", "no-cot") else 6})</text>')
parts.append(f'<line x1="{L}" x2="{W - R}" y1="{y(0.5)}" y2="{y(0.5)}" stroke="#999" stroke-dasharray="4 3"/>')
series = [("validation, 200 full size (every epoch)", "#7f7f7f", [(hours[e], a) for e, a in val])]
for key, color, name in [("full9001", "#d62728", "500 official size (seed 9001)"), ("mid78", "#ff7f0e", "100 with 12-15 nodes (seed 78)"),
                         ("small4243", "#2ca02c", "500 with 6-9 nodes (seed 4243)")]:
    points = [(hours[p["epoch"]], p[key]) for p in curve if key in p]  # a run may be measured on some sets only
    if points:
        series.append((name, color, points))
if compare:
    # Aligned by curriculum epoch: a run's recall epochs (data.recall_epochs) come before its epoch 0.
    recall = lambda d: tomllib.load(open(f"{d}/config.toml", "rb")).get("data", {}).get("recall_epochs", 0)
    shift = recall(run) - recall(compare)
    series.append(("500 official size, compared run (dashed)", "#1f77b4",
                   [(hours[p["epoch"] + shift], p["full9001"]) for p in sorted(curve_of(compare), key=lambda c: c["epoch"]) if p["epoch"] + shift in hours]))
for i, (name, color, pts) in enumerate(series):
    dash = ' stroke-dasharray="5 3"' if compare and i == len(series) - 1 else ""
    parts.append(f'<polyline points="{" ".join(f"{x(h):.1f},{y(a):.1f}" for h, a in pts)}" fill="none" stroke="{color}" stroke-width="{1 if i == 0 else 2}"{dash}/>')
    parts += [f'<circle cx="{x(h):.1f}" cy="{y(a):.1f}" r="2" fill="{color}"/>' for h, a in pts]
    parts.append(f'<line x1="{W - R + 12}" x2="{W - R + 24}" y1="{T + 18 * i + 1.5}" y2="{T + 18 * i + 1.5}" stroke="{color}" stroke-width="3"/>')
    parts.append(f'<text x="{W - R + 30}" y="{T + 18 * i + 5}">{name}</text>')
parts.append(f'<text x="{W - R + 12}" y="{T + 18 * len(series) + 8}" fill="#666">grey dashed: chance (50%)</text>')
parts.append(f'<text x="{W - R + 12}" y="{T + 18 * len(series) + 26}" fill="#666">{done} epochs, {tmax:.1f} h</text>')
parts.append("</svg>")
open(out + ".svg", "w").write("\n".join(parts))
print(f"wrote {out}.svg")
