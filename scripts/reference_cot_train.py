#!/usr/bin/env python3
"""An independent PyTorch reference for the CoT stage's training dynamics (HF GPT2LMHeadModel,
torch.optim.AdamW), on a ProsQA file tokenized exactly as `coconut train` does: question + "\\n",
each step + "\\n", "### " + answer + EOS, loss on the steps and the answer only.

Every EVAL steps it prints the training loss and the teacher-forced log-probability of the
lookup tokens of held-out questions (Y in "Every X is a Y." and "Tom is a Y.", as
`coconut probe lookup`), next to the uniform baseline. Used to tell a slow lookup in our trainer
from a bug in it: the same model, data and optimizer in PyTorch should learn at the same pace.

Usage: scripts/reference_cot_train.py TOKENIZER.json TRAIN.json HELDOUT.json STEPS
       [--layers 2 --width 128 --heads 4 --lr 1e-3 --batch 16 --eps 1e-8 --eval 250 --threads 1]
"""
import argparse
import json
import math
import random
import time

import torch
from tokenizers import Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel

ap = argparse.ArgumentParser()
ap.add_argument("tokenizer"); ap.add_argument("train"); ap.add_argument("heldout"); ap.add_argument("steps", type=int)
ap.add_argument("--layers", type=int, default=2); ap.add_argument("--width", type=int, default=128)
ap.add_argument("--heads", type=int, default=4); ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--batch", type=int, default=16); ap.add_argument("--eps", type=float, default=1e-8)
ap.add_argument("--eval", type=int, default=250); ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
random.seed(a.seed)

tok = Tokenizer.from_file(a.tokenizer)
eos = tok.token_to_id("<|endoftext|>")
enc = lambda s: tok.encode(s, add_special_tokens=False).ids


def example(it):
    q = enc(it["question"] + "\n")
    rest = [t for s in it["steps"] for t in enc(s + "\n")] + enc("### " + it["answer"]) + [eos]
    return q + rest, [-100] * len(q) + rest, len(q)


train = [example(it) for it in json.load(open(a.train))]
held_items = json.load(open(a.heldout))[:64]
held = [example(it) for it in held_items]
model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=768, n_embd=a.width, n_layer=a.layers,
                                   n_head=a.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, eps=a.eps)
vocab = {v: k for k, v in tok.get_vocab().items()}


def batch(exs):
    n = max(len(x) for x, _, _ in exs)
    ids = torch.tensor([x + [0] * (n - len(x)) for x, _, _ in exs])
    lab = torch.tensor([l + [-100] * (n - len(l)) for _, l, _ in exs])
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _, _ in exs])
    return ids, lab, mask


@torch.no_grad()
def lookup_logprob():
    model.eval()
    got, uniform = [], []
    for (x, _, q), it in zip(held, held_items):
        lp = torch.log_softmax(model(torch.tensor([x])).logits[0], -1)
        toks = [vocab[t] for t in x]
        j = q
        while j + 4 < len(toks):
            if toks[j] == "Every":
                got.append(lp[j + 3, x[j + 4]].item()); j += 5
            elif toks[j] == "#":
                break
            elif toks[j + 1] == "is" and toks[j + 2] == "a":
                got.append(lp[j + 2, x[j + 3]].item()); j += 4
            else:
                j += 1
        uniform.append(-math.log(len(it["idx_to_symbol"])))
    model.train()
    return sum(got) / len(got), sum(uniform) / len(uniform)


order, t0, step = [], time.time(), 0
while step < a.steps:
    if not order:
        order = list(range(len(train))); random.shuffle(order)
    idx, order = order[:a.batch], order[a.batch:]
    ids, lab, mask = batch([train[i] for i in idx])
    loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    if step % a.eval == 0:
        look, uni = lookup_logprob()
        print(json.dumps({"step": step, "loss": round(loss.item(), 4), "lookup": round(look, 3), "uniform": round(uni, 3),
                          "samples_per_s": round(step * a.batch / (time.time() - t0), 1)}), flush=True)
