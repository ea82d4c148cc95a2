"""Tiny Shakespeare, character level: train.bin / val.bin (uint16) + meta.json in this folder.

Source: Karpathy's char-rnn input.txt (1,115,394 ASCII characters, sha256 below). First 90% of the characters ->
train (1,003,854 tokens), last 10% -> val (111,540); the vocabulary is the 65 distinct characters of the whole file.
With --tokenizer gpt2 the same two parts are encoded with GPT-2's BPE instead (data/shakespeare/prepare.py runs
this script so). Explained in lectures/01_tokenizer.ipynb and lectures/02_data.ipynb.

    python data/shakespeare_char/prepare.py                     # downloads input.txt into raw/
    python data/shakespeare_char/prepare.py --source PATH/TO/input.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import minilm  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from minilm.cli import OneLineParser, run_main
from minilm.data import write_tokens
from minilm.files import fetch, sha256_file
from minilm.tokenizer import CharTokenizer, GPT2Tokenizer

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
HERE = Path(__file__).resolve().parent


def parse_args(argv=None, out_dir: Path = HERE, tokenizer: str = "char"):
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="local copy of input.txt (skips the download)")
    p.add_argument("--out-dir", type=Path, default=out_dir, help="where to write train.bin, val.bin, meta.json")
    p.add_argument("--tokenizer", choices=("char", "gpt2"), default=tokenizer,
                   help=f"characters, or GPT-2's BPE (default: {tokenizer})")
    p.add_argument("--gpt2-ranks", type=Path, help="local gpt2.tiktoken ranks file (else $MINILM_GPT2_RANKS, "
                                                   "data/gpt2/gpt2.tiktoken or tiktoken's download)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the characters for validation")
    return p.parse_args(argv)


def main(argv=None, out_dir: Path = HERE, tokenizer: str = "char") -> int:
    args = parse_args(argv, out_dir, tokenizer)
    return run_main("", lambda: prepare(args))


def prepare(args) -> int:
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    gpt2 = GPT2Tokenizer(args.gpt2_ranks) if args.tokenizer == "gpt2" else None  # fails before any download
    path = args.source if args.source is not None else fetch(URL, args.out_dir / "raw" / "input.txt", SHA256)
    if not Path(path).is_file():
        raise FileNotFoundError(f"--source {path} does not exist")
    digest = sha256_file(path)
    if digest != SHA256:
        print(f"note: {path} is not the canonical Tiny Shakespeare (sha256 {digest[:12]}...); using it anyway")
    text = Path(path).read_text(encoding="utf-8")
    tok = gpt2 or CharTokenizer.train(text)
    n_train = int(len(text) * (1 - args.val_fraction))  # 90/10 split of the text, then encode each part (nanoGPT)
    if n_train == 0 or n_train == len(text):
        raise ValueError(f"--source {path} has {len(text)} characters: too little text for a train and a "
                         f"validation split")
    splits = {"train": np.array(tok.encode(text[:n_train])), "val": np.array(tok.encode(text[n_train:]))}
    meta = write_tokens(args.out_dir, splits, tok, extra={"source": str(path), "source_sha256": digest})
    for split, n in meta["counts"].items():
        print(f"wrote {args.out_dir / (split + '.bin')}: {n:,} tokens ({meta['dtype']})")
    print(f"wrote {args.out_dir / 'meta.json'}: {tok.kind} tokenizer, vocab_size {meta['vocab_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
