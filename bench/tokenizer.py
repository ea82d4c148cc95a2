"""Tokenizer benchmark: BPE training time on Tiny Shakespeare (vocab 512 and 4096) and encode throughput (MB/s)
of the trained BPE (tiktoken path and hand-written path) against GPT-2's tiktoken encoding, in the same run.

    python bench/tokenizer.py --text PATH/TO/input.txt [--gpt2-ranks PATH] [--repeats 3]   # Tiny Shakespeare

Prints medians of --repeats runs; the machine is shared and noisy, so compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import minilm  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))

from minilm.tokenizer import BPETokenizer, GPT2Tokenizer  # noqa: E402

TEXT = ROOT / "data" / "shakespeare_char" / "raw" / "input.txt"  # where data/shakespeare_char/prepare.py downloads it


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, default=TEXT, help=f"the text to train and encode (default: {TEXT})")
    p.add_argument("--gpt2-ranks", type=Path, default=None,
                   help="gpt2.tiktoken (default: $MINILM_GPT2_RANKS, data/gpt2/gpt2.tiktoken or tiktoken's download)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if not args.text.is_file():
        print(f"error: {args.text} not found; pass --text PATH (e.g. Tiny Shakespeare's input.txt)", file=sys.stderr)
        return 1
    text = args.text.read_text(encoding="utf-8")
    mb = len(text.encode("utf-8")) / 1e6
    print(f"corpus: {args.text.name}, {mb:.2f} MB, median of {args.repeats} runs")
    tok = None
    for V in (512, 4096):
        t, tok = median_time(lambda: BPETokenizer.train(text, V), args.repeats)
        print(f"BPE training, vocab {V:5d}: {t:6.2f} s")
    rows = [("trained BPE 4096, tiktoken", tok.encode), ("trained BPE 4096, hand-written",
                                                         lambda s: BPETokenizer(tok.merges).encode_by_hand(s))]
    try:
        gpt2 = GPT2Tokenizer(args.gpt2_ranks)
        rows.append(("GPT-2, tiktoken", gpt2.encode))
    except (ValueError, OSError) as e:
        print(f"(GPT-2 skipped: {str(e)[:80]}...)")
    ref = None
    for name, fn in rows:
        t, ids = median_time(lambda: fn(text), args.repeats)
        ref = ref or t
        print(f"encode {name:32s}: {mb / t:7.2f} MB/s  ({len(ids):,} tokens, {ref / t:5.2f}x the first row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
