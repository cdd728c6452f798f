#!/usr/bin/env python3
"""The PyTorch side of `coconut bench --reference`, written for this repository (not the official code).

Reads the shapes and the exact token sequences our bench used (JSON from `coconut bench`), and measures
the same work with PyTorch + HuggingFace `transformers` GPT2LMHeadModel on the CPU (or on CUDA with
`coconut bench --reference-device cuda`; timings then synchronise the GPU before reading the clock):

  (a) plain forward + backward + the optimizer step on the training sequences (no thoughts fed back):
      AdamW, or with `"optimizer": "muon"` torch.optim.Muon for the blocks' 2-D weights (RMS matched
      to AdamW's, as ours) and AdamW for the rest,
  (b) the Coconut multi-pass forward as the paper describes it: n thoughts => n + 1 sequential passes
      over the sequence, reusing the KV cache, each thought = the last hidden state of the position
      before it, then the loss (with `"frontier_weight"` > 0 also frontier supervision: each thought read
      through the LM head, cross-entropy against the uniform distribution over its frontier's tokens,
      the batch's `thought_frontiers`), backward and the optimizer step,
  (c) batch-1 greedy decoding after k thoughts, (i) re-running the whole sequence (thoughts re-derived)
      for every new token, as the official code does, and (ii) with HF's KV cache; and batched
      KV-cached decoding for the throughput figures.

With `"rope"` or `"qkv_conv"` in the config (the flagship's attention), each block's q, k, v
projection is followed by the same work as ours: the causal depthwise convolution over time
(Conv1d, one filter a feature) and the rotation of the first `rotary_dims` features of each head's
q and k (GPT-NeoX halves). HF's learned positions stay (one add per token). Over the KV cache the
convolution reads the new positions only (zeros before them): the same work, not the same numbers;
this script measures time only.

Usage: bench_reference.py IN.json OUT.json
"""
import json
import resource
import statistics
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel


DEV = torch.device("cpu")


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def clock():
    sync()
    return time.perf_counter()


class Positions:
    """The position ids of the forward call under way (what the rotation reads)."""
    ids = None


def forward(model, **kw):
    Positions.ids = kw["position_ids"]
    return model.transformer(**kw)


class FlagshipQkv(torch.nn.Module):
    """c_attn, then the causal convolution over time of q, k, v, then the rotation of q and k."""

    def __init__(self, c_attn, cfg):
        super().__init__()
        self.c_attn, self.d, self.heads = c_attn, cfg["n_embd"], cfg["n_head"]
        self.rotary = cfg["rotary_dims"] if cfg.get("rope") else 0
        w = cfg.get("qkv_conv", 0)
        self.conv = torch.nn.Conv1d(3 * self.d, 3 * self.d, w, groups=3 * self.d, padding=w - 1, bias=False) if w else None

    def forward(self, x):
        y = self.c_attn(x)
        if self.conv is not None:
            y = self.conv(y.transpose(1, 2))[:, :, : x.shape[1]].transpose(1, 2)
        if not self.rotary:
            return y
        b, n, _ = y.shape
        hd, r = self.d // self.heads, self.rotary
        q, k, v = y.split(self.d, dim=2)
        theta = 10000.0 ** (-torch.arange(0, r, 2, device=y.device, dtype=torch.float32) / r)
        angle = Positions.ids[:, :, None].float() * theta  # [b, n, r/2]
        cos, sin = angle.cos()[:, :, None, :], angle.sin()[:, :, None, :]

        def rotate(t):
            t = t.reshape(b, n, self.heads, hd)
            a, c, rest = t[..., : r // 2], t[..., r // 2 : r], t[..., r:]
            return torch.cat([a * cos - c * sin, c * cos + a * sin, rest], dim=-1).reshape(b, n, self.d)

        return torch.cat([rotate(q), rotate(k), v], dim=2)


def model_from(cfg):
    c = GPT2Config(vocab_size=cfg["vocab_size"], n_positions=cfg["n_positions"], n_embd=cfg["n_embd"], n_layer=cfg["n_layer"],
                   n_head=cfg["n_head"], n_inner=cfg.get("n_inner"), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(c)
    if cfg.get("rope") or cfg.get("qkv_conv"):
        for block in model.transformer.h:
            block.attn.c_attn = FlagshipQkv(block.attn.c_attn, cfg)
    return model.to(DEV)


def tensors(batch):
    t = lambda k: torch.tensor(batch[k], device=DEV)
    return t("input_ids"), t("labels"), t("attention_mask"), t("position_ids"), batch["latent_positions"]


def coconut_forward(model, ids, mask, pos, latents, feed_back=True):
    """n thoughts => n + 1 passes; pass i runs up to the i-th thought column, reusing the cache.
    Returns the hidden states, the cache and the thoughts ([batch, d] each)."""
    wte = model.transformer.wte
    embeds = wte(ids)
    n = max((len(l) for l in latents), default=0) if feed_back else 0
    cols = sorted({l[i] for l in latents for i in range(len(l))}) if n else []
    hidden, thoughts, cache, start = [], [], None, 0
    for i in range(n + 1):
        end = cols[i] if i < n else ids.shape[1]
        out = forward(model, inputs_embeds=embeds[:, start:end], attention_mask=mask[:, :end], position_ids=pos[:, start:end],
                                past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        hidden.append(out.last_hidden_state)
        if i < n:
            # The thought: the last hidden state before the latent column, fed back as its embedding.
            thought = out.last_hidden_state[:, -1:, :]
            thoughts.append(thought[:, 0])
            embeds = torch.cat([embeds[:, :end], thought, embeds[:, end + 1:]], dim=1)
        start = end
    return torch.cat(hidden, dim=1), cache, thoughts


def loss_of(model, hidden, labels):
    logits = model.lm_head(hidden)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


def frontier_targets(batch, n, vocab):
    """[n, batch, vocab]: thought i of row b trained toward the uniform distribution over its frontier."""
    rows = batch.get("thought_frontiers") or []
    t = torch.zeros(n, len(rows), vocab)
    for b, row in enumerate(rows):
        for i, ids in enumerate(row[:n]):
            for tok in ids:
                t[i, b, tok] += 1.0 / len(ids)
    return t.to(DEV)


def frontier_loss(model, thoughts, targets):
    logp = torch.log_softmax(model.lm_head(torch.stack(thoughts[: targets.shape[0]])), dim=-1)
    rows = (targets.sum(-1) > 0).sum().clamp_min(1)
    return -(logp * targets).sum() / rows


class Optimizers:
    """AdamW everywhere, or Muon for the blocks' matrices (c_attn, c_proj, c_fc weights) and AdamW for the rest."""

    def __init__(self, model, kind):
        named = list(model.named_parameters())
        matrix = lambda n, p: kind == "muon" and p.ndim == 2 and n.split(".")[-2] in ("c_attn", "c_proj", "c_fc")
        # (the flagship's c_attn sits one level down, `attn.c_attn.c_attn`: still "c_attn"; its
        # convolution taps are 3-D, AdamW's, as ours)
        self.opts = [torch.optim.AdamW([p for n, p in named if not matrix(n, p)], lr=1e-4, weight_decay=0.01)]
        if kind == "muon":
            muon = [p for n, p in named if matrix(n, p)]
            self.opts.append(torch.optim.Muon(muon, lr=1e-4, weight_decay=0.01, adjust_lr_fn="match_rms_adamw"))

    def step(self):
        for o in self.opts:
            o.step()

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad()


def train_rate(model, batch, steps, multipass, optimizer, frontier_weight=0.0):
    ids, labels, mask, pos, latents = tensors(batch)
    opt = Optimizers(model, optimizer)
    n = max((len(l) for l in latents), default=0)
    targets = frontier_targets(batch, n, model.config.vocab_size) if frontier_weight > 0 and n > 0 else None

    def step():
        if multipass:
            hidden, _, thoughts = coconut_forward(model, ids, mask, pos, latents)
            loss = loss_of(model, hidden, labels)
            if targets is not None:
                loss = loss + frontier_weight * frontier_loss(model, thoughts, targets)
        else:
            out = forward(model, input_ids=ids, attention_mask=mask, position_ids=pos)
            loss = loss_of(model, out.last_hidden_state, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    step()  # warm-up
    t0 = clock()
    for _ in range(steps):
        step()
    return ids.shape[0] * steps / (clock() - t0)


def left_pad(prompts, pad):
    n = max(map(len, prompts))
    ids = [[pad] * (n - len(p)) + p for p in prompts]
    mask = [[0] * (n - len(p)) + [1] * len(p) for p in prompts]
    pos = [[0] * (n - len(p)) + list(range(len(p))) for p in prompts]
    lat = [[i + n - len(p) for i, t in enumerate(p) if t == LATENT] for p in prompts]
    return torch.tensor(ids, device=DEV), torch.tensor(mask, device=DEV), torch.tensor(pos, device=DEV), lat


@torch.no_grad()
def decode_recompute(model, prompt, new_tokens):
    """The official style: the whole sequence (thoughts included) re-run for every new token."""
    seq = list(prompt)
    for _ in range(new_tokens):
        ids, mask, pos, lat = left_pad([seq], EOS)
        hidden, _, _ = coconut_forward(model, ids, mask, pos, lat)
        nxt = int(model.lm_head(hidden[:, -1]).argmax(-1))
        if nxt == EOS:
            break
        seq.append(nxt)
    return seq[len(prompt):]


@torch.no_grad()
def decode_cached(model, prompts, new_tokens):
    ids, mask, pos, lat = left_pad(prompts, EOS)
    hidden, cache, _ = coconut_forward(model, ids, mask, pos, lat)
    nxt = model.lm_head(hidden[:, -1]).argmax(-1, keepdim=True)
    p = pos[:, -1:] + 1
    done = nxt[:, 0] == EOS
    for _ in range(new_tokens - 1):
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
        out = forward(model, input_ids=nxt, attention_mask=mask, position_ids=p, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        nxt = model.lm_head(out.last_hidden_state[:, -1]).argmax(-1, keepdim=True)
        done |= nxt[:, 0] == EOS
        if bool(done.all()):
            break
        p = p + 1


def latency(fn, prompts, new_tokens):
    ms = []
    for p, n in zip(prompts, new_tokens):
        t0 = clock()
        fn(p, n)
        ms.append((clock() - t0) * 1000)
    q = statistics.quantiles(ms, n=20)
    return {"mean": statistics.fmean(ms), "p50": statistics.median(ms), "p95": q[18]}


def main():
    global LATENT, EOS, DEV
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    DEV = torch.device(spec.get("device", "cpu"))
    LATENT, EOS = spec["latent_id"], spec["eos_id"]
    model = model_from(spec["config"])
    out = {"threads": spec["threads"], "device": str(DEV), "torch": torch.__version__, "train_samples_per_s": {}, "train_plain_samples_per_s": {}}
    for stage, batch in spec["train"].items():
        model.train()
        out["train_samples_per_s"][stage] = train_rate(model, batch, spec["train_steps"], multipass=True, optimizer=spec.get("optimizer", "adamw"),
                                                       frontier_weight=spec.get("frontier_weight", 0.0))
        out["train_plain_samples_per_s"][stage] = train_rate(model, batch, spec["train_steps"], multipass=False, optimizer=spec.get("optimizer", "adamw"))
    model.eval()
    gen = spec["gen"]
    if gen is None:  # a later round of `coconut bench --rounds`: training only
        json.dump(out, open(sys.argv[2], "w"), indent=1)
        return
    out["gen_latency_ms_b1_recompute"] = latency(lambda p, n: decode_recompute(model, p, n), gen["prompts"][: gen["recompute_questions"]], gen["new_tokens"])
    out["gen_latency_ms_b1_kvcache"] = latency(lambda p, n: decode_cached(model, [p], n), gen["prompts"], gen["new_tokens"])
    out["gen_latency_ms_b1"] = out["gen_latency_ms_b1_kvcache"]
    out["gen_questions_per_s"] = {}
    for b in gen["batch_sizes"]:
        prompts = gen["batched_prompts"][:b]
        decode_cached(model, prompts[:2], 2)  # warm-up
        t0 = clock()
        decode_cached(model, prompts, max(gen["new_tokens"]))
        out["gen_questions_per_s"][f"b{b}"] = len(prompts) / (clock() - t0)
    a, b = torch.randn(1024, 1024, device=DEV), torch.randn(1024, 1024, device=DEV)
    a @ b
    t0 = clock()
    for _ in range(5):
        a @ b
    out["gemm_peak_gflops"] = 2 * 1024**3 * 5 / (clock() - t0) / 1e9
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if DEV.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    json.dump(out, open(sys.argv[2], "w"), indent=1)


if __name__ == "__main__":
    main()
