#!/usr/bin/env python3
"""Accuracy of a Coconut checkpoint on a ProsQA file, broken down by question features: the position
of the right option in "Is P a A or B?", the number of concepts in the graph, the number of people.

    scripts/error_breakdown.py CHECKPOINT DATA.json [K] [COCONUT_BINARY]

Answers come from `coconut generate --json` (k continuous thoughts, default 6); a question counts as
right when the decoded answer contains the right option.
"""
import collections, json, re, subprocess, sys

ckpt, data = sys.argv[1], sys.argv[2]
k = sys.argv[3] if len(sys.argv) > 3 else "6"
binary = sys.argv[4] if len(sys.argv) > 4 else "target/release/coconut"
items = json.load(open(data))
args = [binary, "generate", "--checkpoint", ckpt, "--k", k, "--json", "--max-new-tokens", "16"]
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
    for key in (
        "right option named " + ("first" if gold == first else "second"),
        f"concepts {concepts // 5 * 5}-{concepts // 5 * 5 + 4}",
        f"people in the question: {len(people)}",
    ):
        groups[key][0] += right
        groups[key][1] += 1
total = sum(g[0] for k, g in groups.items() if k.startswith("right option"))
print(f"{ckpt} on {data}, k = {k}: {total}/{len(items)} = {100 * total / len(items):.1f}%")
for key, (right, n) in sorted(groups.items()):
    print(f"  {key}: {right}/{n} = {100 * right / n:.1f}%")
