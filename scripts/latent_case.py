#!/usr/bin/env python3
"""Latent-search case study (the paper's Figure on node values per thought) from `coconut analyze`.

For the chosen questions of a ProsQA file, runs `coconut analyze --k K` and writes, per question, the
nodes each continuous thought favours: a Markdown table (top nodes per thought with their value, hops
from the person, height, and whether the node is on the answer's path / in the frontier) and an SVG
heat map (rows: thoughts; columns: the concepts reachable from the person, ordered by hops; colour:
value), so one sees whether thought t spreads its value over the nodes t hops away, as in the paper.

Usage: scripts/latent_case.py CHECKPOINT DATA.json OUT_PREFIX K INDEX [INDEX ...]
"""
import json
import os
import sys

from coconut_cli import analyze, hops_from, run_json

ckpt, data, out, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
indices = [int(i) for i in sys.argv[5:]] or [0]
items = json.load(open(data))

md, svgs, cases = [f"Node values per continuous thought, checkpoint `{ckpt}`, {os.path.basename(data)}, k = {k}\n"], [], []
for idx in indices:
    it = items[idx]
    a = analyze(ckpt, it["question"], k)
    names = a["names"]
    hops = hops_from(a)
    path = {names.index(s.rstrip(".").split()[-1]) for s in it["steps"] if s.rstrip(".").split()[-1] in names}
    target = names.index(it["answer"].rstrip(".").split()[-1])
    gen = run_json("generate", "--checkpoint", ckpt, "--question", it["question"], "--k", k, "--json")
    answer = (gen[0] if isinstance(gen, list) else gen)["answer"]
    case = {"index": idx, "question_tail": it["question"][it["question"].rfind("Is "):], "answer": it["answer"], "model_answer": answer,
            "path": [names[i] for i in sorted(path, key=lambda i: hops.get(i, 99))], "thoughts": []}
    md.append(f"\n**Test #{idx}**: {case['question_tail']} Gold: {it['answer']} (path {' → '.join(case['path'])}). Model: {answer}\n")
    md.append("| thought | top nodes (value, hops from the person, height; P = on the gold path, F = frontier) |\n|---|---|")
    for st in a["steps"][1:]:
        top = sorted(range(len(names)), key=lambda i: -st["distribution"][i])[:5]
        cells = ", ".join(f"{names[i]} {st['distribution'][i]:.3f} (h{hops.get(i, '–')}, ht{a['heights'][i]}"
                          f"{', P' if i in path else ''}{', F' if i in st['frontier'] else ''})" for i in top)
        md.append(f"| {st['t']} | {cells} |")
        case["thoughts"].append({"t": st["t"], "values": {names[i]: st["distribution"][i] for i in range(len(names))}})
    cases.append(case)
    # Heat map: concepts reachable from the person, by hops.
    cols = sorted((i for i in hops if not a["is_person"][i]), key=lambda i: (hops[i], names[i]))
    cw, rh, left, topm = 34, 22, 70, 120
    w, h = max(left + cw * len(cols) + 60, 560), topm + rh * k + 30
    vmax = max(max(st["distribution"][i] for i in cols) for st in a["steps"][1:]) or 1
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="10">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="4" y="14" font-size="12">Test #{idx}: {case["question_tail"]} gold {it["answer"]} model: {answer}</text>']
    for j, i in enumerate(cols):
        x = left + cw * j
        style = ' font-weight="bold"' if i in path else ""
        p.append(f'<text x="{x + cw / 2}" y="{topm - 6}" text-anchor="start" transform="rotate(-60 {x + cw / 2} {topm - 6})"{style}>'
                 f'{names[i]}{" ★" if i == target else ""} ({hops[i]})</text>')
    for r, st in enumerate(a["steps"][1:]):
        y = topm + rh * r
        p.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">thought {st["t"]}</text>')
        for j, i in enumerate(cols):
            v = st["distribution"][i] / vmax
            shade = int(255 * (1 - v))
            outline = ' stroke="black"' if i in st["frontier"] else ""
            p.append(f'<rect x="{left + cw * j}" y="{y}" width="{cw - 2}" height="{rh - 2}" fill="rgb(255,{shade},{shade})"'
                     f'{outline}><title>{names[i]}: {st["distribution"][i]:.4f}</title></rect>')
    p.append(f'<text x="{left}" y="{h - 8}">colour: value (max {vmax:.3f}); outlined: frontier; bold: gold path; ★ the answer; (n) hops from the person</text>')
    p.append("</svg>")
    svgs.append("\n".join(p))
json.dump(cases, open(out + ".json", "w"), indent=1)
open(out + ".md", "w").write("\n".join(md) + "\n")
for n, svg in zip(indices, svgs):
    open(f"{out}-{n}.svg", "w").write(svg)
print("\n".join(md))
