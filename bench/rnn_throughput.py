"""Parallelism: training tokens/s of an LSTM and of the GPT at context 64, 128, 256 and 512, equal parameter count,
measured in the same run.

    python bench/rnn_throughput.py                 # writes lectures/results/rnn_throughput.json

Models: train.py's default GPT (4 layers, d_model 128, hand-written attention, fused LayerNorm/GELU; 0.81M parameters
+ 128 per position of its learned position table) and minilm/rnn.py's RNNLM as train.py's shakespeare-char-lstm preset
builds it (2 LSTM layers of 220, untied: 0.81M), once with PyTorch's fused nn.LSTM and once with the hand-written loop
over time steps (the taught path). Every training
step holds 4096 tokens (batch 4096 / T), with AdamW and bf16 autocast where the CPU has it, as train.py. The three
models and four contexts are timed in turn, round after round, and each figure is the median over rounds, so a
slow spell on a shared machine hits all of them alike; the ratios are the result, the absolute numbers are not.

The GPT computes all T positions of a layer in one matmul; the LSTM must finish step t before it can start t + 1,
so its work comes in T small matmuls of B rows. On one CPU thread that matters less than on a GPU, which needs big
matmuls to fill its cores; the attention term of the GPT's cost (12 L T D FLOPs per token, Eq. 5.11) grows with T,
the LSTM's cost per token does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minilm.files import atomic_write_text  # noqa: E402
from minilm.config import ModelConfig  # noqa: E402
from minilm.model import CausalLM  # noqa: E402
from minilm.rnn import RNNLM  # noqa: E402
from minilm.training import autocast_context, configure_optimizer, resolve_dtype  # noqa: E402
from train import PRESETS  # noqa: E402

GPT = PRESETS["shakespeare-char"][1]
LSTM = PRESETS["shakespeare-char-lstm"][1]
CONTEXTS = [64, 128, 256, 512]
TOKENS_PER_STEP = 4096
V = 65


def build(name: str, T: int) -> torch.nn.Module:
    if name == "gpt":
        return CausalLM(ModelConfig(**{**GPT, "vocab_size": V, "max_seq_len": T}))
    return RNNLM(ModelConfig(**{**LSTM, "vocab_size": V, "max_seq_len": T, "fused_kernels": name == "lstm-fused"}))


def time_steps(model, optimizer, T: int, steps: int, ctx, generator) -> float:
    """Seconds per training step (forward, backward, AdamW) on random tokens, after one untimed step."""
    B = TOKENS_PER_STEP // T
    times = []
    for i in range(steps + 1):
        x = torch.randint(0, V, (B, T), generator=generator)
        t0 = time.perf_counter()
        with ctx:
            _, loss = model(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step allocates buffers
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return {"cpu": cpu, "load_average": [round(x, 2) for x in os.getloadavg()], "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "note": "a shared machine (2 cores, several users): absolute tokens/s are noisy; ratios within one run hold"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed steps per model, context and round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "lectures" / "results" / "rnn_throughput.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ctx = autocast_context("cpu", resolve_dtype("auto", "cpu"))
    names = ["gpt", "lstm-fused", "lstm-loop"]
    runs = {}
    for name in names:
        for T in CONTEXTS:
            torch.manual_seed(0)
            model = build(name, T)
            runs[name, T] = (model, configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99)))
    seconds = {key: [] for key in runs}
    gen = torch.Generator().manual_seed(0)
    start_load = machine()
    for r in range(args.rounds):
        for T in CONTEXTS:
            for name in names:
                model, optimizer = runs[name, T]
                seconds[name, T].append(time_steps(model, optimizer, T, args.steps, ctx, gen))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    for T in CONTEXTS:
        rate = {name: TOKENS_PER_STEP / statistics.median(seconds[name, T]) for name in names}
        rows.append({"context": T, "batch": TOKENS_PER_STEP // T,
                     **{f"{name}_tokens_per_s": round(rate[name]) for name in names},
                     **{f"{name}_params": runs[name, T][0].num_params() for name in names},
                     "gpt_over_lstm_fused": round(rate["gpt"] / rate["lstm-fused"], 3),
                     "lstm_fused_over_loop": round(rate["lstm-fused"] / rate["lstm-loop"], 3)})
        print(f"T {T:>4} (batch {TOKENS_PER_STEP // T:>3}): " + ", ".join(f"{n} {rate[n]:,.0f} tok/s" for n in names)
              + f" | GPT / fused LSTM {rate['gpt'] / rate['lstm-fused']:.2f}x", flush=True)
    results = {"command": f"python bench/rnn_throughput.py --rounds {args.rounds} --steps {args.steps} "
                          f"--threads {args.threads}", "tokens_per_step": TOKENS_PER_STEP,
               "dtype": str(resolve_dtype("auto", "cpu")), "rows": rows,
               "machine_at_start": start_load, "machine_at_end": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
