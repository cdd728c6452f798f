#!/usr/bin/env python3
"""Accuracy of a Coconut checkpoint on a ProsQA file, broken down by question features: the position
of the right option in "Is P a A or B?", the number of concepts in the graph, the number of people,
the hops of the question's shortest path, and how many concepts are reachable from the person (what
a breadth-first frontier has to hold at once, summed over its steps).

    scripts/error_breakdown.py CHECKPOINT DATA.json [DATA.json ...] [--k K]

The files are pooled. Answers come from `coconut generate --json` (k continuous thoughts, default 6);
a question counts as right when the decoded answer contains the right option.
"""
import argparse, collections, json, re, subprocess

from coconut_cli import BINARY, bfs

cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
cli.add_argument("checkpoint")
cli.add_argument("files", nargs="+", metavar="DATA.json")
cli.add_argument("--k", default="6")
opts = cli.parse_args()
ckpt, k, data = opts.checkpoint, opts.k, " + ".join(opts.files)
items = [item for f in opts.files for item in json.load(open(f))]
args = [BINARY, "generate", "--checkpoint", ckpt, "--k", k, "--json", "--max-new-tokens", "64"]  # a CoT chain needs ~50
for item in items:
    args += ["--question", item["question"]]
out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
assert len(answers) == len(items), f"{len(answers)} answers for {len(items)} questions"

groups = collections.defaultdict(lambda: [0, 0])
for item, answer in zip(items, answers):
    person, first, _ = re.search(r"Is (\w+) a (\w+) or (\w+)\?", item["question"]).groups()
    gold = item["answer"].split()[-1].rstrip(".")
    right = gold in answer["answer"]
    people = {a for a, _ in re.findall(r"(?:Every )?(\w+) is an? (\w+)\.", item["question"]) if a[0].isupper()}
    concepts = len(item.get("idx_to_symbol") or [])
    children = collections.defaultdict(list)
    for a, b in item.get("edges") or []:
        children[a].append(b)
    hops = bfs([item["root"]], children) if "root" in item else {}
    reachable = len(hops) - 1
    graph = [f"hops {hops[item['target']]}", f"reachable from the person {reachable // 4 * 4:2}-{reachable // 4 * 4 + 3}"] if hops else []
    for key in (
        "right option named " + ("first" if gold == first else "second"),
        f"concepts {concepts // 5 * 5}-{concepts // 5 * 5 + 4}",
        f"people in the question: {len(people)}",
        *graph,
    ):
        groups[key][0] += right
        groups[key][1] += 1
total = sum(g[0] for k, g in groups.items() if k.startswith("right option"))
print(f"{ckpt} on {data}, k = {k}: {total}/{len(items)} = {100 * total / len(items):.1f}%")
for key, (right, n) in sorted(groups.items()):
    print(f"  {key}: {right}/{n} = {100 * right / n:.1f}%")
