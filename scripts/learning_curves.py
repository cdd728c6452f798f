#!/usr/bin/env python3
"""Learning curves: validation accuracy against training wall time, one line per run.

Reads each run's metrics.jsonl (written by `coconut train`: `val_accuracy` once an epoch, `time_s` the
run's elapsed seconds) and its config.toml (method), and writes OUT.json, OUT.md (a table per run) and
OUT.svg (accuracy vs hours). Runs from before `time_s` existed get their time from the logged
samples/s (training time only).

Usage: scripts/learning_curves.py OUT_PREFIX LABEL=RUN_DIR[@EARLIER_LABEL[#EPOCH]] ...
  (@EARLIER_LABEL: the run continued that one, so its clock starts where that one ended;
   #EPOCH: it started from that run's checkpoint of EPOCH, so its clock starts at that epoch's point)
"""
import json
import sys
import tomllib

out = sys.argv[1]
runs = []
for arg in sys.argv[2:]:
    label, run = arg.split("=", 1)
    run, _, after = run.partition("@")
    after, _, from_epoch = after.partition("#")
    earlier = next((r["points"] for r in runs if r["label"] == after and r["points"]), [])
    if from_epoch:
        earlier = [p for p in earlier if p["epoch"] == int(from_epoch)]
    start = earlier[-1]["hours"] if earlier else 0.0
    cfg = tomllib.load(open(f"{run}/config.toml", "rb"))
    batch, log_every = cfg["optim"]["batch_size"], cfg["run"].get("log_every", 10)
    points, t_est, last_step = [], 0.0, 0
    for line in open(f"{run}/metrics.jsonl"):
        m = json.loads(line)
        if "samples_per_s" in m:
            t_est += (m["step"] - last_step) * batch / max(m["samples_per_s"], 1e-9)
            last_step = m["step"]
        if "val_accuracy" in m:
            points.append({"epoch": m["epoch"], "stage": m["stage"], "k": m["k"], "step": m["step"],
                           "hours": start + m.get("time_s", t_est) / 3600, "val_accuracy": m["val_accuracy"]})
    runs.append({"label": label, "run": run, "variant": cfg["curriculum"]["variant"], "points": points})
json.dump(runs, open(out + ".json", "w"), indent=1)

md = []
for r in runs:
    md.append(f"**{r['label']}** (`{r['run']}`, variant {r['variant']})\n")
    md.append("| epoch | stage | k | step | hours | generated validation accuracy |\n|---|---|---|---|---|---|")
    for p in r["points"]:
        md.append(f"| {p['epoch']} | {p['stage']} | {p['k']} | {p['step']} | {p['hours']:.2f} | {100 * p['val_accuracy']:.1f}% |")
    md.append("")
open(out + ".md", "w").write("\n".join(md))

W, H, L, B, T, R = 900, 360, 50, 40, 20, 380
tmax = max((p["hours"] for r in runs for p in r["points"]), default=1) or 1
x = lambda h: L + (W - L - R) * h / tmax
y = lambda a: H - B - (H - B - T) * a
colors = ["#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#d62728", "#7f7f7f",
          "#bcbd22", "#e377c2", "#393b79", "#637939"]
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
for a in [0, 0.25, 0.5, 0.75, 1.0]:
    parts.append(f'<line x1="{L}" x2="{W - R}" y1="{y(a)}" y2="{y(a)}" stroke="#ddd"/>')
    parts.append(f'<text x="{L - 6}" y="{y(a) + 4}" text-anchor="end">{int(a * 100)}%</text>')
steps = max(1, int(tmax) + 1)
for i in range(steps + 1):
    h = tmax * i / steps
    parts.append(f'<text x="{x(h)}" y="{H - B + 16}" text-anchor="middle">{h:.1f}</text>')
parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">training wall time, hours (one CPU core each)</text>')
parts.append(f'<text x="12" y="{(T + H - B) / 2}" transform="rotate(-90 12 {(T + H - B) / 2})" text-anchor="middle">generated validation accuracy</text>')
parts.append(f'<line x1="{L}" x2="{W - R}" y1="{y(0.5)}" y2="{y(0.5)}" stroke="#999" stroke-dasharray="4 3"/>')
for i, r in enumerate(runs):
    c = colors[i % len(colors)]
    dash = ' stroke-dasharray="6 2"' if i >= len(colors) else ""  # a second round of colours is dashed
    pts = " ".join(f"{x(p['hours']):.1f},{y(p['val_accuracy']):.1f}" for p in r["points"])
    if pts:
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
    for p in r["points"]:
        parts.append(f'<circle cx="{x(p["hours"]):.1f}" cy="{y(p["val_accuracy"]):.1f}" r="2.5" fill="{c}"/>')
    parts.append(f'<line x1="{W - R + 12}" x2="{W - R + 24}" y1="{T + 18 * i + 1.5}" y2="{T + 18 * i + 1.5}" stroke="{c}" stroke-width="3"{dash}/>')
    parts.append(f'<text x="{W - R + 30}" y="{T + 18 * i + 5}">{r["label"]}</text>')
parts.append(f'<text x="{W - R + 12}" y="{T + 18 * len(runs) + 8}" fill="#666">grey dashed: chance (50%)</text>')
parts.append("</svg>")
open(out + ".svg", "w").write("\n".join(parts))
print(f"wrote {out}.json, {out}.md, {out}.svg")
