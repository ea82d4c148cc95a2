"""Tiny Shakespeare with GPT-2's BPE: train.bin / val.bin (uint16 ids < 50,257) + meta.json in this folder.

Source: Karpathy's char-rnn input.txt (../shared/data/tinyshakespeare/SOURCE.md). First 90% of the characters ->
train, last 10% -> val, each encoded with GPT-2's tokenizer (301,966 / 36,059 tokens, as in nanoGPT).
GPT-2's ranks come from --gpt2-ranks PATH, else $MINILM_GPT2_RANKS, else data/gpt2/gpt2.tiktoken, else
tiktoken's download (see minilm.tokenizer.GPT2Tokenizer). Explained in lectures/01_tokenizer.ipynb.

    python data/shakespeare/prepare.py --source ../shared/data/tinyshakespeare/input.txt \\
        --gpt2-ranks ../shared/data/gpt2/gpt2.tiktoken
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import minilm  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from minilm.data import fetch, sha256_file, write_tokens
from minilm.tokenizer import GPT2Tokenizer

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
HERE = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.error = lambda message: p.exit(2, f"{p.prog}: error: {message} (see --help)\n")  # one line, not usage
    p.add_argument("--source", type=Path, help="local copy of input.txt (skips the download)")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write train.bin, val.bin, meta.json")
    p.add_argument("--gpt2-ranks", type=Path, help="local gpt2.tiktoken ranks file (else $MINILM_GPT2_RANKS or download)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the characters for validation")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not 0 < args.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
        tok = GPT2Tokenizer(args.gpt2_ranks)
        path = args.source if args.source is not None else fetch(URL, args.out_dir / "raw" / "input.txt", SHA256)
        if not Path(path).is_file():
            raise FileNotFoundError(f"--source {path} does not exist")
        digest = sha256_file(path)
        if digest != SHA256:
            print(f"note: {path} is not the canonical Tiny Shakespeare (sha256 {digest[:12]}...); using it anyway")
        text = Path(path).read_text(encoding="utf-8")
        n_train = int(len(text) * (1 - args.val_fraction))  # split the text, then encode each part (as nanoGPT)
        if n_train == 0 or n_train == len(text):
            raise ValueError(f"--source {path} has {len(text)} characters: too little text for a train and a "
                             f"validation split")
        splits = {"train": np.array(tok.encode(text[:n_train])), "val": np.array(tok.encode(text[n_train:]))}
        meta = write_tokens(args.out_dir, splits, tok, extra={"source": str(path), "source_sha256": digest})
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, n in meta["counts"].items():
        print(f"wrote {args.out_dir / (split + '.bin')}: {n:,} tokens ({meta['dtype']})")
    print(f"wrote {args.out_dir / 'meta.json'}: gpt2 tokenizer, vocab_size {meta['vocab_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
