#!/usr/bin/env python3
"""Where each continuous thought's value goes by hop distance from the person: for the first N questions
of a ProsQA file, `coconut analyze` at k thoughts, each step's node values normalised over the graph, then
averaged: the two options, concepts 1 / 2 / 3 / 4+ hops from the person (not an option), and concepts the
person cannot reach. Step 0 is the question alone; step t follows thought t. Prints a Markdown table.

usage: scripts/latent_by_distance.py CHECKPOINT DATA.json [N] [K]
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

from coconut_cli import analyze, hops_from

checkpoint, data = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 100
k = sys.argv[4] if len(sys.argv) > 4 else "6"
questions = json.load(open(data))[:n]
keys = ["options", "1 hop", "2 hops", "3 hops", "4+ hops", "unreachable"]
mass = defaultdict(lambda: defaultdict(float))
for q in questions:
    a = analyze(checkpoint, q["question"], k)
    hops = hops_from(a)
    for step in a["steps"]:
        for node, share in enumerate(step["distribution"]):
            if node in a["options"]:
                key = "options"
            elif node not in hops:
                key = "unreachable"
            elif hops[node] == 0:
                continue  # the person
            else:
                key = keys[min(hops[node], 4)]
            mass[step["t"]][key] += share / len(questions)
print(f"Mean share of each step's value, {len(questions)} questions of {Path(data).name}, checkpoint {checkpoint}, k = {k}\n")
print("| step | " + " | ".join(keys) + " |")
print("|---" * (len(keys) + 1) + "|")
for t in sorted(mass):
    print(f"| {t} | " + " | ".join(f"{mass[t][key]:.3f}" for key in keys) + " |")
