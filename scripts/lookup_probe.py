#!/usr/bin/env python3
"""What a ProsQA model has learned so far, read from teacher-forced log-probabilities (`coconut score`).

For N questions of a ProsQA file, scores the full language chain (question, steps, answer) and averages
the log-probability of three kinds of concept token:
  - copy:   X in "Every X is a Y." (the concept the previous step ended on: a local copy),
  - lookup: Y in "Every X is a Y." / "Tom is a Y." (the next concept: find the fact about X in the
            question and copy its object: a content-based lookup, what an induction head does),
  - answer: the concept in "### Tom is a Y." (a copy of the last step's concept).
The uniform baseline is -ln(#concepts in the graph). A model that has not formed the lookup sits at or
below it; the paper's search needs it.

Usage: scripts/lookup_probe.py CHECKPOINT DATA.json [N] [--json OUT.json]
"""
import json
import math
import os
import sys

from coconut_cli import run_json as run

args = [a for a in sys.argv[1:] if not a.startswith("--json")]
ckpt, data = args[0], args[1]
n = int(args[2]) if len(args) > 2 else 30
out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
if out_json in args:
    args.remove(out_json)
vocab = {v: k for k, v in json.load(open(os.path.join(ckpt, "tokenizer.json")))["model"]["vocab"].items()}

sums = {"copy": [], "lookup": [], "answer": []}
uniform = []
for it in json.load(open(data))[:n]:
    text = it["question"] + "\n" + "\n".join(it["steps"]) + "\n### " + it["answer"]
    scored = run("score", "--checkpoint", ckpt, "--text", text)
    toks, lp = [vocab.get(t, "?") for t in scored["tokens"]], scored["logprobs"]
    qlen = len(run("tokenize", "--tokenizer", ckpt, "--text", it["question"] + "\n")["tokens"])
    # lp[j] = log p(toks[j + 1] | toks[..= j])
    j = qlen
    while j < len(toks):
        if toks[j] == "Every" and j + 4 < len(toks):
            sums["copy"].append(lp[j])          # X at j + 1
            sums["lookup"].append(lp[j + 3])    # Y at j + 4
            j += 5
        elif toks[j] == "#" and j + 5 < len(toks):
            sums["answer"].append(lp[j + 5])    # "# # # Tom is a Y": Y at j + 6
            break
        elif j + 3 < len(toks) and toks[j + 1] == "is" and toks[j + 2] == "a" and toks[j] != "Every":
            sums["lookup"].append(lp[j + 2])    # "Tom is a Y": Y at j + 3
            j += 4
        else:
            j += 1
    uniform.append(-math.log(len(it["idx_to_symbol"])))

mean = lambda v: sum(v) / max(len(v), 1)
result = {"checkpoint": ckpt, "questions": n, **{k: {"mean_logprob": mean(v), "tokens": len(v)} for k, v in sums.items()},
          "uniform_logprob": mean(uniform)}
print(f"{ckpt}: mean log-prob (nats) copy {result['copy']['mean_logprob']:.2f}, lookup {result['lookup']['mean_logprob']:.2f}, "
      f"answer {result['answer']['mean_logprob']:.2f}; uniform over the graph's concepts {result['uniform_logprob']:.2f} "
      f"({n} questions)")
if out_json:
    json.dump(result, open(out_json, "w"), indent=1)
