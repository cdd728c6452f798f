#!/usr/bin/env python3
"""How fast a from-scratch 2 x 128 model learns the lookup at the official size, in PyTorch (a quick
prototype of a model change before it is built into the crate). Trains on CoT sequences of recall
questions (scripts/recall-data: ~31 facts, one child per concept, so each "Every X is a ?" has one
right answer) and reports, every EVAL_S seconds of training, teacher-forced on VAL: how often the
argmax at each step's looked-up concept is the right one ("lookup"), and at the first "Every X is a ?"
("first").

VARIANT:
  plain  GPT-2-style block (pre-LN, GELU, rotary positions, 8 heads)
  conv   the same with a causal depthwise convolution of width 4 over time on the queries, keys and
         values (Primer's multi-dconv-head attention, So et al. 2021), initialised to the identity:
         one layer can then match "X three tokens back" (the fact "Every X is a Y" seen from Y)
         without first learning a previous-token head.

usage: scripts/lookup_formation_torch.py VARIANT MINUTES TRAIN.json VAL.json OUT.json [THREADS] [EVAL_S]
(python: "$(scripts/bench-reference-env)", which creates the venv with torch when it is missing)
"""
import json
import math
import re
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

variant, minutes, train_path, val_path, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
torch.set_num_threads(int(sys.argv[6]) if len(sys.argv) > 6 else 2)
eval_s = float(sys.argv[7]) if len(sys.argv) > 7 else 60.0
torch.manual_seed(0)
D, H, L, KERNEL = 128, 8, 2, 4

words = lambda s: re.findall(r"[A-Za-z]+|[.?#]", s)
vocab = {"<pad>": 0, "<eos>": 1, "###": 2}


def encode(item):
    q = words(item["question"])
    steps = [words(s) for s in item["steps"]]
    ids = [vocab.setdefault(t, len(vocab)) for t in q]
    labels = [-100] * len(ids)
    lookups = []  # (position predicting the looked-up concept, is first "Every")
    seen_every = False
    for s in steps:
        for j, t in enumerate(s):
            if j > 0 and s[j - 1] == "a":
                first = s[0] == "Every" and not seen_every
                seen_every |= s[0] == "Every"
                lookups.append((len(ids) - 1, first))
            ids.append(vocab.setdefault(t, len(vocab)))
            labels.append(ids[-1])
    for t in ["###"] + words(item["answer"]) + ["<eos>"]:
        ids.append(vocab.setdefault(t, len(vocab)) if t != "<eos>" else 1)
        labels.append(ids[-1])
    return ids, labels, lookups


train = [encode(it) for it in json.load(open(train_path))]
val = [encode(it) for it in json.load(open(val_path))][:300]
V = len(vocab) + 8


class Rope:
    def __init__(self, hd, n=1024):
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(n).float(), inv)
        self.cos, self.sin = f.cos(), f.sin()

    def __call__(self, x):  # [B, H, T, hd]
        T = x.shape[2]
        c, s = self.cos[:T], self.sin[:T]
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.o = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.f1, self.f2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        if variant == "conv":
            w = torch.zeros(3 * D, 1, KERNEL)
            w[:, 0, -1] = 1.0  # identity: the current position's projection
            self.conv = nn.Parameter(w)

    def forward(self, x, rope):
        B, T, _ = x.shape
        qkv = self.qkv(self.l1(x))
        if variant == "conv":
            # Σ_j w_j · qkv[t - j]: the projection j positions back (zeros before the start).
            qkv = sum(F.pad(qkv, (0, 0, j, 0))[:, :T] * self.conv[:, 0, KERNEL - 1 - j] for j in range(KERNEL))
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in qkv.split(D, -1))
        q, k = rope(q), rope(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(y)
        return x + self.f2(F.gelu(self.f1(self.l2(x)), approximate="tanh"))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.rope = Rope(D // H)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.lf = nn.LayerNorm(D)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0, 0.02)

    def forward(self, idx):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x, self.rope)
        return self.lf(x) @ self.wte.weight.T


def batch(items):
    T = max(len(i[0]) for i in items)
    x = torch.zeros(len(items), T, dtype=torch.long)
    y = torch.full((len(items), T), -100)
    for r, (ids, labels, _) in enumerate(items):
        x[r, : len(ids)] = torch.tensor(ids)
        y[r, : len(labels) - 1] = torch.tensor(labels[1:])
    return x, y


@torch.no_grad()
def evaluate(model):
    model.eval()
    right = first_right = n = first_n = 0
    for i in range(0, len(val), 50):
        chunk = val[i : i + 50]
        x, _ = batch(chunk)
        pred = model(x).argmax(-1)
        for r, (ids, _, lookups) in enumerate(chunk):
            for p, first in lookups:
                ok = int(pred[r, p] == ids[p + 1])
                right, n = right + ok, n + 1
                if first:
                    first_right, first_n = first_right + ok, first_n + 1
    model.train()
    return right / max(n, 1), first_right / max(first_n, 1)


model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200))
curve, step, trained, seen = [], 0, 0.0, 0
g = torch.Generator().manual_seed(1)
order = torch.randperm(len(train), generator=g).tolist()
next_eval = eval_s
while trained < minutes * 60:
    t0 = time.time()
    items = [train[order[(seen + j) % len(train)]] for j in range(32)]
    seen += 32
    x, y = batch(items)
    loss = F.cross_entropy(model(x).view(-1, V), y.view(-1), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    step += 1
    trained += time.time() - t0
    if trained >= next_eval or trained >= minutes * 60:
        acc, first = evaluate(model)
        curve.append({"seconds": round(trained, 1), "step": step, "questions": seen, "loss": round(loss.item(), 4), "lookup": acc, "first": first})
        print(json.dumps(curve[-1]), flush=True)
        next_eval += eval_s
json.dump({"variant": variant, "threads": torch.get_num_threads(), "params": sum(p.numel() for p in model.parameters()), "curve": curve}, open(out_path, "w"), indent=1)
