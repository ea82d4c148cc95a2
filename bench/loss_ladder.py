"""The loss ladder on Tiny Shakespeare (characters): from a uniform guess to the default GPT, and the recurrent models
of the same size, every trained rung with the same data, steps, batch, context, schedule and optimiser.

    python bench/loss_ladder.py --rung all                       # every rung, one after the other
    python bench/loss_ladder.py --rung gpt --max-iters 2200      # one rung (results merge into the JSON)

Rungs, each adding one idea to the one before (Karpathy, "Let's build GPT: from scratch, in code, spelled out",
2023, walks the same ladder on a GPU):
  uniform          ln 65: every character equally likely (no training)
  count-bigram     p(b | a) = (N(a, b) + 1) / (N(a) + V) counted on the train split (closed form, add-one smoothing)
  learned-bigram   a (V, V) table of logits trained by gradient descent (the same model, found by training)
  one-head         + token and position embeddings (D = 128) and one causal self-attention head (then W_O), 1 layer
  four-heads       4 heads of D/4 instead of one
  heads-mlp        + the MLP after the attention (one layer, no residual, no LayerNorm)
  deep-no-residual 4 such layers stacked, still without residual connections or LayerNorm
  gpt              + residual connections and pre-norm LayerNorm: exactly train.py's default GPT (4 layers)
  lstm, gru        minilm/rnn.py's RNNLM as train.py's shakespeare-char-lstm / -gru presets build it: 2 layers,
                   untied, sized to the GPT's parameter count (fused kernels)
Every model is trained with train.py's shakespeare-char preset settings (AdamW, lr 3e-3 cosine to 3e-5, warmup 50,
batch 64 x context 64, weight decay 0.1, clipping 1.0, bf16 autocast where the CPU has it) for --max-iters steps;
the val loss is over the whole val split in non-overlapping windows of 64 (train.py's full_split_loss).
Results merge into lectures/results/loss_ladder.json (read by lectures/10_rnn_vs_attention.ipynb).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minilm.attention import MultiHeadAttention  # noqa: E402
from minilm.block import MLP  # noqa: E402
from minilm.files import atomic_write_text  # noqa: E402
from minilm.config import ModelConfig  # noqa: E402
from minilm.data import get_causal_batch, load_meta, load_split  # noqa: E402
from minilm.model import CausalLM, init_weights, next_token_loss  # noqa: E402
from minilm.rnn import RNNLM  # noqa: E402
from minilm.training import (autocast_context, clip_grad_norm, configure_optimizer, evaluate, get_lr,  # noqa: E402
                             resolve_dtype)
from train import PRESETS, full_split_loss  # noqa: E402

SETTINGS, GPT = PRESETS["shakespeare-char"]  # the default run's settings and model
RUNGS = ["uniform", "count-bigram", "learned-bigram", "one-head", "four-heads", "heads-mlp", "deep-no-residual",
         "gpt", "lstm", "gru"]
RNNS = {arch: PRESETS[f"shakespeare-char-{arch}"][1] for arch in ("lstm", "gru")}  # ~0.81M parameters, as the GPT


class Bigram(nn.Module):
    """logits(x_{t+1} | x_t) = W[x_t]: a (V, V) table, nothing else."""

    def __init__(self, V: int):
        super().__init__()
        self.table = nn.Embedding(V, V)  # (V, V), zero init: the uniform guess
        nn.init.zeros_(self.table.weight)

    def forward(self, idx, targets=None):
        logits = self.table(idx)  # (B, T, V)
        return logits, None if targets is None else next_token_loss(logits, targets)


class NoResidual(nn.Module):
    """Embeddings -> n_layers x [attention (-> MLP)], each layer's output replacing its input (no residual, no
    LayerNorm) -> tied LM head. The rungs below the GPT, built from minilm's own attention and MLP."""

    def __init__(self, config: ModelConfig, mlp: bool):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.attn = nn.ModuleList([MultiHeadAttention(config) for _ in range(config.n_layers)])
        self.mlp = nn.ModuleList([MLP(config) for _ in range(config.n_layers)]) if mlp else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight
        init_weights(self, n_layers=1 / 2)  # no residual stream to protect: every weight N(0, 0.02^2), no rescaling

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))  # (B, T, D)
        for i, attn in enumerate(self.attn):
            x = attn(x)  # (B, T, D)
            if self.mlp is not None:
                x = self.mlp[i](x)  # (B, T, D)
        logits = self.lm_head(x)  # (B, T, V)
        return logits, None if targets is None else next_token_loss(logits, targets)


def build(rung: str, V: int) -> nn.Module:
    gpt = ModelConfig(**{**GPT, "vocab_size": V})
    one_layer = ModelConfig(**{**GPT, "vocab_size": V, "n_layers": 1})
    if rung == "learned-bigram":
        return Bigram(V)
    if rung == "one-head":
        return NoResidual(ModelConfig(**{**GPT, "vocab_size": V, "n_layers": 1, "n_heads": 1}), mlp=False)
    if rung == "four-heads":
        return NoResidual(one_layer, mlp=False)
    if rung == "heads-mlp":
        return NoResidual(one_layer, mlp=True)
    if rung == "deep-no-residual":
        return NoResidual(gpt, mlp=True)
    if rung == "gpt":
        return CausalLM(gpt)
    return RNNLM(ModelConfig(**{**RNNS[rung], "vocab_size": V}))


def count_bigram_loss(train: np.ndarray, val: np.ndarray, V: int) -> float:
    counts = np.ones((V, V))  # add-one (Laplace) smoothing: no pair of the val split gets probability 0
    np.add.at(counts, (train[:-1].astype(np.int64), train[1:].astype(np.int64)), 1)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))  # (V, V): log p(b | a)
    return float(-logp[val[:-1].astype(np.int64), val[1:].astype(np.int64)].mean())


def unigram_loss(train: np.ndarray, val: np.ndarray, V: int) -> float:
    """The loss of predicting every character by its train-split frequency alone (add-one smoothed): a reference line
    for the ladder, since a model that learns no context at all ends here."""
    counts = np.bincount(train.astype(np.int64), minlength=V) + 1.0  # (V,)
    return float(-np.log(counts / counts.sum())[val.astype(np.int64)].mean())


def train_rung(rung: str, data_dir: Path, max_iters: int, seed: int) -> dict:
    V = load_meta(data_dir)["vocab_size"]
    train_data, val_data = load_split(data_dir, "train"), load_split(data_dir, "val")
    T, B = GPT["max_seq_len"], SETTINGS["batch_size"]
    torch.manual_seed(seed)
    model = build(rung, V)
    optimizer = configure_optimizer(model, SETTINGS["lr"], SETTINGS["weight_decay"], (0.9, SETTINGS["beta2"]))
    ctx = autocast_context("cpu", resolve_dtype("auto", "cpu"))
    gen = torch.Generator().manual_seed(seed)
    curve, t0 = [], time.perf_counter()
    eval_every = max(max_iters // 6, 1)
    for step in range(max_iters + 1):
        if step % eval_every == 0 or step == max_iters:
            val = evaluate(model, lambda g=torch.Generator().manual_seed(1): get_causal_batch(val_data, B, T, g), 10, ctx)
            curve.append({"step": step, "val_loss_estimate": val})
        if step == max_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, SETTINGS["lr"], SETTINGS["min_lr"], min(SETTINGS["warmup_iters"], max_iters),
                                   max_iters)
        x, y = get_causal_batch(train_data, B, T, gen)
        with ctx:
            _, loss = model(x, y)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    return {"val_loss": full_split_loss(model, val_data, T, B, "cpu", ctx), "params": n_params,
            "train_seconds": round(seconds, 1), "curve": curve}


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return {"cpu": cpu, "load_average": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "note": "a shared machine (2 cores, several users): times are noisy, losses are not"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rung", default="all", choices=["all", *RUNGS])
    p.add_argument("--data", default=str(ROOT / "data" / "shakespeare_char"))
    p.add_argument("--max-iters", type=int, default=SETTINGS["max_iters"], help="steps per trained rung")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fair to the others on a shared CPU)")
    p.add_argument("--out", default=str(ROOT / "lectures" / "results" / "loss_ladder.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir, out = Path(args.data), Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    if results.get("max_iters", args.max_iters) != args.max_iters:
        sys.exit(f"{out} holds rungs trained for {results['max_iters']} steps; use --max-iters {results['max_iters']} "
                 f"or another --out, so every rung has the same budget")
    command = "python bench/loss_ladder.py --rung RUNG " + f"--max-iters {args.max_iters}"
    results.update(max_iters=args.max_iters, batch_size=SETTINGS["batch_size"], context=GPT["max_seq_len"],
                   default_preset_max_iters=SETTINGS["max_iters"], command=command)
    results.setdefault("rungs", {})
    V = load_meta(data_dir)["vocab_size"]
    results["unigram_val_loss"] = unigram_loss(load_split(data_dir, "train"), load_split(data_dir, "val"), V)
    for rung in RUNGS if args.rung == "all" else [args.rung]:
        if rung == "uniform":
            row = {"val_loss": math.log(V), "params": 0}
        elif rung == "count-bigram":
            row = {"val_loss": count_bigram_loss(load_split(data_dir, "train"), load_split(data_dir, "val"), V),
                   "params": V * V}
        else:
            row = train_rung(rung, data_dir, args.max_iters, args.seed)
        row["machine"] = machine()
        results["rungs"][rung] = row
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(results, indent=1) + "\n")  # after every rung: a stopped run keeps its rungs
        print(f"{rung:>17}: val loss {row['val_loss']:.4f} ({row['params']:,} parameters"
              f"{', %.0f s' % row['train_seconds'] if 'train_seconds' in row else ''})", flush=True)


if __name__ == "__main__":
    main()
