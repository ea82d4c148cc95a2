"""Forward + backward time of minilm's hand-written attention vs PyTorch's fused kernel, fp32 and bf16 autocast.

    python bench/attention.py [--repeats 7] [--lengths 64 256 1024]

Both run in the same process, interleaved, on the same inputs; we print the median of several repeats and the
ratio hand-written / fused (> 1 means the fused kernel is faster). Causal masking, B=8, H=4, Dh=32 by default.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from minilm.attention import scaled_dot_product_attention


def _step(fn, q, k, v, ctx):
    with ctx:
        out = fn(q, k, v, is_causal=True)
    out.float().sum().backward()


def _time(fn, q, k, v, ctx, iters):
    t0 = time.perf_counter()
    for _ in range(iters):
        _step(fn, q, k, v, ctx)
    return (time.perf_counter() - t0) / iters


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="sequence lengths T")
    p.add_argument("--batch", type=int, default=8, help="batch size B")
    p.add_argument("--heads", type=int, default=4, help="heads H")
    p.add_argument("--d-head", type=int, default=32, help="head width Dh")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (median reported)")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch} H={args.heads} "
          f"Dh={args.d_head}, causal, forward+backward")
    print(f"{'T':>6} {'dtype':>9} {'manual ms':>10} {'fused ms':>10} {'manual/fused':>13}")
    impls = {"manual": scaled_dot_product_attention, "fused": F.scaled_dot_product_attention}
    for T in args.lengths:
        iters = max(1, 2048 // T)
        for dtype in ("float32", "bfloat16"):
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else nullcontext()
            q, k, v = (torch.randn(args.batch, args.heads, T, args.d_head, requires_grad=True) for _ in range(3))
            times = {name: [] for name in impls}
            for name, fn in impls.items():
                _step(fn, q, k, v, ctx)  # warm-up
            for _ in range(args.repeats):
                for name, fn in impls.items():  # interleaved, so drift on a shared machine hits both alike
                    times[name].append(_time(fn, q, k, v, ctx, iters))
            m, f = (statistics.median(times[n]) * 1e3 for n in impls)
            print(f"{T:>6} {dtype:>9} {m:>10.2f} {f:>10.2f} {m / f:>13.2f}")


if __name__ == "__main__":
    main()
