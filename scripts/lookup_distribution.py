#!/usr/bin/env python3
"""Where a model's probability goes at the first lookup of the language chain.

For the first step "Every X is a Y." of each question's chain, scores every concept of the graph as
Y (teacher-forced, `coconut score`, one call per candidate) and sums the probability by the
candidate's relation to X in the graph: a child of X (a correct lookup), one of the two answer
options, X itself, a parent of X, or another concept. A model that reads the fact about X out of
the question puts its mass on the children; uniform guessing gives each class its share of the
graph's concepts.

Usage: scripts/lookup_distribution.py CHECKPOINT DATA.json [N] [--json OUT.json]
"""
import collections
import json
import math
import sys

from coconut_cli import run_json

args = [a for a in sys.argv[1:] if not a.startswith("--json")]
out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
if out_json in args:
    args.remove(out_json)
ckpt, data = args[0], args[1]
n = int(args[2]) if len(args) > 2 else 20
mass, uniform, counted = collections.Counter(), collections.Counter(), 0
for it in json.load(open(data))[:n]:
    names, steps = it["idx_to_symbol"], it["steps"]
    children, parents = collections.defaultdict(set), collections.defaultdict(set)
    for p, c in it["edges"]:
        children[p].add(c)
        parents[c].add(p)
    options = {names.index(w) for w in it["question"].rstrip("?").split(" a ")[-1].split(" or ")}
    first = next((i for i, s in enumerate(steps) if s.startswith("Every ")), None)
    if first is None:
        continue
    x = names.index(steps[first].split()[1])
    prefix = it["question"] + "\n" + "".join(s + "\n" for s in steps[:first]) + f"Every {names[x]} is a "
    concepts = [j for j, name in enumerate(names) if not name[0].isupper()]

    def kind(j):
        return "child" if j in children[x] else "option" if j in options else "self" if j == x else "parent" if j in parents[x] else "other"

    for j in concepts:
        scored = run_json("score", "--checkpoint", ckpt, "--text", prefix + names[j])
        mass[kind(j)] += math.exp(scored["logprobs"][-1])
        uniform[kind(j)] += 1 / len(concepts)
    counted += 1
result = {"checkpoint": ckpt, "questions": counted,
          "mass": {k: round(mass[k] / counted, 3) for k in ["child", "option", "self", "parent", "other"]},
          "uniform": {k: round(uniform[k] / counted, 3) for k in ["child", "option", "self", "parent", "other"]}}
print(json.dumps(result))
if out_json:
    json.dump(result, open(out_json, "w"), indent=1)
