"""From GPT-2 to Llama, one change at a time: whole-split validation loss and tokens/s on Tiny Shakespeare.

    python bench/ablation.py                                   # the default preset's 2200 steps, seeds 1 and 2
    python bench/ablation.py --jobs 2 --rounds 5 --steps 10 --out lectures/results/ablation.json
                                                               # what was committed (a shared 2-core machine)
    python bench/ablation.py --max-iters 200 --jobs 2 --rounds 3 --steps 5 --out lectures/results/ablation_200_steps.json
                                                               # the same at 200 steps: how fast each change learns early

Six model configurations, everything else the shakespeare-char preset of train.py (4 layers, d_model 128, 4 heads,
context 64, batch 64, lr 3e-3 cosine to 3e-5, AdamW groups, clipping 1.0, bf16 autocast where the CPU has it):
  gpt2      the GPT-2 block: LayerNorm, GELU MLP, learned positions, 4 key/value heads
  rmsnorm   LayerNorm -> RMSNorm                        swiglu    GELU MLP -> SwiGLU (d_ff 384, Llama rule)
  rope      learned position table -> RoPE              gqa       4 -> 2 key/value heads
  all four  the four together (train.py --preset shakespeare-char-llama)
Each (configuration, seed) trains --max-iters steps in its own process with one thread (--jobs of them at once) and is
scored by the loss over every token of the val split (non-overlapping windows of 64, no sampling noise).
Tokens/s are measured separately, interleaved: --rounds rounds, each timing --steps training steps of every
configuration in turn in this one process, so a slow spell on a shared machine hits all alike; the median per
configuration, as a ratio to the GPT-2 block. The ratios carry over between machines, absolute numbers do not.
lectures/09_modern_blocks.ipynb plots the committed JSON.
Also computed (not measured): the KV-cache memory of GPT-2 small's shape with 12, 4 and 1 key/value heads (Eq. 9.9).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
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

from minilm.attention import kv_cache_bytes  # noqa: E402
from minilm.config import ModelConfig  # noqa: E402
from minilm.data import get_causal_batch, load_meta, load_split  # noqa: E402
from minilm.model import CausalLM  # noqa: E402
from minilm.training import autocast_context, clip_grad_norm, configure_optimizer, get_lr, resolve_dtype  # noqa: E402

LLAMA = dict(norm="rmsnorm", mlp="swiglu", pos_emb="rope", n_kv_heads=2)
CONFIGS = {
    "gpt2": {},
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(mlp="swiglu"),
    "rope": dict(pos_emb="rope"),
    "gqa": dict(n_kv_heads=2),
    "all four": LLAMA,
}
PRESET = "shakespeare-char"


def preset():
    """(settings dict, model dict) of train.py's default preset."""
    import train  # the repository root is on sys.path

    return train.PRESETS[PRESET]


def build(name: str, vocab_size: int, seed: int):
    settings, model = preset()
    torch.manual_seed(seed)
    config = ModelConfig(**{**model, **CONFIGS[name], "vocab_size": vocab_size})
    m = CausalLM(config)
    opt = configure_optimizer(m, settings["lr"], settings["weight_decay"], (0.9, settings["beta2"]))
    return m, opt, settings


def train_step(m, opt, batch, ctx, lr: float) -> float:
    for group in opt.param_groups:
        group["lr"] = lr
    with ctx:
        _, loss = m(*batch)
    loss.backward()
    clip_grad_norm(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


@torch.no_grad()
def whole_split_loss(m, data, T: int, batch_size: int, ctx) -> float:
    """Next-token loss over every token of `data`, in non-overlapping windows of T."""
    m.eval()
    n = (len(data) - 1) // T
    total = 0.0
    for i in range(0, n, batch_size):
        rows = range(i, min(i + batch_size, n))
        xy = torch.stack([torch.from_numpy(data[r * T: r * T + T + 1].astype("int64")) for r in rows])  # (B, T+1)
        with ctx:
            _, loss = m(xy[:, :-1], xy[:, 1:])
        total += float(loss) * len(rows)
    m.train()
    return total / n


def run(job: tuple[str, int, int, str]) -> dict:
    """Train one (configuration, seed) for max_iters steps; return its whole-split val loss and tokens/s."""
    name, seed, max_iters, data_dir = job
    torch.set_num_threads(1)
    meta = load_meta(Path(data_dir))
    train_data, val_data = load_split(Path(data_dir), "train"), load_split(Path(data_dir), "val")
    m, opt, s = build(name, meta["vocab_size"], seed)
    T, B = m.config.max_seq_len, s["batch_size"]
    ctx = autocast_context("cpu", resolve_dtype("auto", "cpu"))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(max_iters):
        lr = get_lr(step, s["lr"], s["min_lr"], min(s["warmup_iters"], max_iters), max_iters)  # Eq. 6.6
        loss = train_step(m, opt, get_causal_batch(train_data, B, T, gen), ctx, lr)
        if not math.isfinite(loss):
            raise ValueError(f"{name} seed {seed}: training loss {loss} at step {step}")
    seconds = time.perf_counter() - t0
    val = whole_split_loss(m, val_data, T, B, ctx)
    return {"config": name, "seed": seed, "val_loss": round(val, 4), "last_train_loss": round(loss, 4),
            "train_s": round(seconds, 1), "tokens_per_s": round(max_iters * B * T / seconds),
            "params": m.num_params()}


def throughput(data_dir: str, rounds: int, steps: int) -> dict:
    """Median tokens/s per configuration, timed in interleaved chunks of `steps` training steps in this process."""
    torch.set_num_threads(1)
    meta = load_meta(Path(data_dir))
    train_data = load_split(Path(data_dir), "train")
    ctx = autocast_context("cpu", resolve_dtype("auto", "cpu"))
    models = {name: build(name, meta["vocab_size"], 0) for name in CONFIGS}
    gen = torch.Generator().manual_seed(0)
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(rounds + 1):  # round 0 warms up every model (first-call allocations), and is not counted
        for name, (m, opt, s) in models.items():
            T, B = m.config.max_seq_len, s["batch_size"]
            batches = [get_causal_batch(train_data, B, T, gen) for _ in range(steps)]
            t0 = time.perf_counter()
            for batch in batches:
                train_step(m, opt, batch, ctx, s["lr"])
            rates[name].append(steps * B * T / (time.perf_counter() - t0))
    medians = {name: statistics.median(r[1:]) for name, r in rates.items()}
    B, T = models["gpt2"][2]["batch_size"], models["gpt2"][0].config.max_seq_len
    return {name: {"tokens_per_s": round(v), "ms_per_step": round(1000 * B * T / v, 1),
                   "ratio_vs_gpt2": round(v / medians["gpt2"], 3)} for name, v in medians.items()}


def kv_cache_124m() -> dict:
    """Eq. 9.9 at GPT-2 small's shape (12 layers, 12 heads of 64, context 1024), bf16, per sequence."""
    out = {}
    for n_kv in (12, 4, 1):
        c = ModelConfig(vocab_size=50257, max_seq_len=1024, d_model=768, n_heads=12, n_layers=12, n_kv_heads=n_kv)
        out[f"n_kv_heads={n_kv}"] = {"bytes_per_sequence": kv_cache_bytes(c, 1024, 1, 2),
                                     "MiB_per_sequence": round(kv_cache_bytes(c, 1024, 1, 2) / 2**20, 2)}
    return out


def machine() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return {"cpu": sh("lscpu | grep 'Model name'").split(":", 1)[-1].strip(), "cores": os.cpu_count(),
            "uptime": sh("uptime"), "torch": torch.__version__, "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data" / "shakespeare_char"))
    p.add_argument("--max-iters", type=int, default=None, help="steps per run (default: the preset's, 2200)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    p.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (0: skip)")
    p.add_argument("--steps", type=int, default=10, help="training steps per configuration per round")
    p.add_argument("--out", default=None, help="write the results here as JSON (lectures/results/ablation.json)")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. 'machine shared')")
    args = p.parse_args(argv)
    if not (Path(args.data) / "meta.json").is_file():
        print(f"ablation.py: error: {args.data}/meta.json not found: python data/shakespeare_char/prepare.py first",
              file=sys.stderr)
        return 1
    max_iters = args.max_iters or preset()[0]["max_iters"]
    start = machine()
    print(f"{start['cpu']} | {start['uptime']}")
    jobs = [(name, seed, max_iters, args.data) for seed in args.seeds for name in args.configs]
    t0 = time.time()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            runs = []
            for r in pool.imap_unordered(run, jobs):
                print(json.dumps(r), flush=True)
                runs.append(r)
    else:
        runs = []
        for job in jobs:
            runs.append(run(job))
            print(json.dumps(runs[-1]), flush=True)
    speed = throughput(args.data, args.rounds, args.steps) if args.rounds else {}
    summary = []
    for name in args.configs:
        vals = [r["val_loss"] for r in sorted(runs, key=lambda r: r["seed"]) if r["config"] == name]
        summary.append({"config": name, "val_loss_per_seed": vals, "val_loss_mean": round(statistics.mean(vals), 4),
                        **({"tokens_per_s_ratio_vs_gpt2": speed[name]["ratio_vs_gpt2"]} if name in speed else {})})
    result = {"command": "python bench/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "preset": PRESET, "max_iters": max_iters, "seeds": args.seeds, "jobs": args.jobs,
              "machine_start": start, "machine_end": machine(), "wall_s": round(time.time() - t0),
              "note": args.note, "summary": summary, "throughput": speed, "runs": sorted(
                  runs, key=lambda r: (list(CONFIGS).index(r["config"]), r["seed"])),
              "kv_cache_gpt2_124m_bf16": kv_cache_124m()}
    print(f"{'config':<10} {'val loss per seed':<22} {'mean':>7} {'tok/s vs gpt2':>14}")
    for row in summary:
        ratio = row.get("tokens_per_s_ratio_vs_gpt2")
        print(f"{row['config']:<10} {', '.join(f'{v:.4f}' for v in row['val_loss_per_seed']):<22} "
              f"{row['val_loss_mean']:>7.4f} {ratio if ratio is not None else '-':>14}")
    for name, v in result["kv_cache_gpt2_124m_bf16"].items():
        print(f"KV cache, GPT-2 small shape, T=1024, bf16, {name}: {v['MiB_per_sequence']} MiB per sequence")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
