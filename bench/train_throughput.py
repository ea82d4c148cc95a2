"""Training throughput of train.py's default CPU path against a reference configuration of the same script.

    python bench/train_throughput.py --data data/shakespeare_char [--max-iters 2000] [--chunk 250]

Model: nanoGPT's documented CPU run (4 layers, 4 heads, d_model 128, context 64, batch 12, Tiny Shakespeare chars).
  default    what `python train.py` picks on this machine: bf16 autocast where the CPU has native bf16, minilm's
             hand-written attention, no torch.compile
  reference  what most CPU users run: float32, eager, PyTorch's fused attention (--attn-impl sdpa)
Both runs train for --max-iters steps, in chunks of --chunk steps that alternate between them (each chunk resumes
its run exactly, with --stop-after / --resume), so a slow spell on a shared machine hits both alike. Tokens/s are
read from the runs' own metrics.jsonl (training steps only, evals excluded): the median over log intervals.
Finally the validation loss of each run over the whole val split. Prints the ratio default / reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ["--n-layers", "4", "--n-heads", "4", "--d-model", "128", "--max-seq-len", "64", "--dropout", "0.0"]
CONFIGS = {
    "default": ["--dtype", "auto", "--attn-impl", "manual", "--compile", "off"],
    "reference": ["--dtype", "float32", "--attn-impl", "sdpa", "--compile", "off"],
}


def run_chunk(name: str, out: Path, stop: int, args, first: bool) -> float:
    cmd = [sys.executable, str(ROOT / "train.py"), "--preset", "shakespeare-char", "--data", args.data,
           "--out-dir", str(out), "--max-iters", str(args.max_iters), "--batch-size", "12", "--lr", "1e-3",
           "--min-lr", "1e-4", "--warmup-iters", "100", "--eval-interval", str(args.chunk), "--eval-iters", "20",
           "--log-interval", "50", "--stop-after", str(stop), "--samples", "0", "--seed", "1337",
           *MODEL, *CONFIGS[name], *([] if first else ["--resume"])]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def full_val_loss(out: Path, data: str) -> float:
    sys.path.insert(0, str(ROOT))
    from minilm.checkpoint import load_model
    from minilm.data import load_split
    from minilm.training import autocast_context
    from train import full_split_loss

    model, _, _ = load_model(out / "ckpt.pt")
    return full_split_loss(model, load_split(data, "val"), model.config.max_seq_len, 64, "cpu",
                           autocast_context("cpu", __import__("torch").float32))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT / "data" / "shakespeare_char"), help="prepared Tiny Shakespeare (char)")
    p.add_argument("--max-iters", type=int, default=2000, help="training steps per configuration")
    p.add_argument("--chunk", type=int, default=250, help="steps per alternating chunk")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        outs = {name: Path(tmp) / name for name in CONFIGS}
        wall = {name: 0.0 for name in CONFIGS}
        for stop in range(args.chunk, args.max_iters + args.chunk, args.chunk):
            for name in CONFIGS:
                wall[name] += run_chunk(name, outs[name], min(stop, args.max_iters), args, stop == args.chunk)
        print(f"{args.max_iters} steps each, nanoGPT CPU model (4x128, ctx 64, batch 12), alternating chunks of "
              f"{args.chunk}")
        print(f"{'config':>10} {'tokens/s':>10} {'wall s':>8} {'val loss (whole split)':>24}")
        rates = {}
        for name, out in outs.items():
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            rates[name] = statistics.median(r["tokens_per_s"] for r in records if "tokens_per_s" in r)
            print(f"{name:>10} {rates[name]:>10,.0f} {wall[name]:>8.0f} {full_val_loss(out, args.data):>24.4f}")
        print(f"speed-up default / reference: {rates['default'] / rates['reference']:.2f}x tokens/s, "
              f"{wall['reference'] / wall['default']:.2f}x wall time (start-up and evals included)")


if __name__ == "__main__":
    main()
