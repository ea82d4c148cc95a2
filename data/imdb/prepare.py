"""Unlabelled IMDB reviews for masked-LM pretraining: train.bin / val.bin, document spans, meta.json here.

Source: the aclImdb tarball (Maas et al. 2011, https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz;
its 50,000 reviews aclImdb/train/unsup/<id>_0.txt in id order) or a text file with one review per line, such
as a 5,000-review sample of it. The file is split on "\\n" only: Python's
str.splitlines() would also break at the cp1252 leftover \\x85 inside reviews.

Cleaning: IMDb's `<br />` markup -> a space; cp1252 leftovers \\x85 \\x96 \\x97 -> ... (ellipsis), en dash, em dash;
\\xa0 and runs of whitespace -> one space. The last --val-fraction of the reviews is the validation split.
Tokenizer: a byte-level BPE trained here on the training reviews (--vocab-size) or GPT-2's (--tokenizer gpt2),
with <pad> <mask> <cls> <sep> added; it is stored in meta.json, so fine-tuning on SST-2 reuses exactly it.
Each review is written as its tokens followed by <sep> (so packed windows see document boundaries);
<split>_docs.bin holds each review's (start, end) token span, without the <sep>, for one-review-per-row batches.
Explained in lectures/02_data.ipynb (Eq. 2.3-2.4 use it).

    python data/imdb/prepare.py --source PATH/TO/unsup_5k.txt --vocab-size 8192
"""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

try:
    import minilm  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from minilm.cli import OneLineParser, run_main
from minilm.data import write_tokens
from minilm.files import fetch, sha256_file
from minilm.tokenizer import BPETokenizer, GPT2Tokenizer

URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"  # the published tarball checksum
SPECIALS = ("pad", "mask", "cls", "sep")
HERE = Path(__file__).resolve().parent
CP1252 = str.maketrans({"\x85": "\u2026", "\x96": "\u2013", "\x97": "\u2014", "\xa0": " "})
_UNSUP = re.compile(r"aclImdb/train/unsup/(\d+)_\d+\.txt$")


def parse_args(argv=None):
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="aclImdb_v1.tar.gz, or a .txt file with one review per line")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write the .bin files and meta.json")
    p.add_argument("--tokenizer", choices=("bpe", "gpt2"), default="bpe", help="train a BPE here, or GPT-2's")
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary before the 4 special tokens")
    p.add_argument("--gpt2-ranks", type=Path, help="local gpt2.tiktoken (with --tokenizer gpt2)")
    p.add_argument("--max-docs", type=int, default=None, help="use only the first N reviews (quick runs)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last fraction of the reviews for validation")
    return p.parse_args(argv)


def clean(review: str) -> str:
    review = re.sub(r"<br\s*/?>", " ", review).translate(CP1252)
    return re.sub(r"\s+", " ", review).strip()


def read_reviews(path: Path, max_docs: int | None) -> list[str]:
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r:*") as tar:
            # Read in archive order (seeking back in a .gz re-decompresses it), then sort by review id.
            reviews = {int(m.group(1)): tar.extractfile(info).read().decode("utf-8")
                       for info in tar if info.isfile() and (m := _UNSUP.search(info.name))}
        if not reviews:
            raise ValueError(f"{path} has no aclImdb/train/unsup/*.txt: is it aclImdb_v1.tar.gz?")
        return [reviews[k] for k in sorted(reviews)][:max_docs]
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.split("\n")  # "\n" only: never str.splitlines(), which also splits at \x85
    if lines and lines[-1] == "":
        lines.pop()
    return lines[:max_docs]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main("", lambda: prepare(args), errors=(tarfile.TarError,))


def prepare(args) -> int:
    path = args.source if args.source is not None else fetch(URL, args.out_dir / "raw" / "aclImdb_v1.tar.gz", SHA256)
    if not Path(path).is_file():
        raise FileNotFoundError(f"--source {path} does not exist")
    docs = [clean(r) for r in read_reviews(Path(path), args.max_docs)]
    empty = [i + 1 for i, doc in enumerate(docs) if not doc]
    if empty:
        raise ValueError(f"{path}: review {empty[0]} is empty after cleaning ({len(empty)} empty in all)")
    n_val = max(1, int(len(docs) * args.val_fraction))
    if len(docs) - n_val < 1:
        raise ValueError(f"{path} has {len(docs)} reviews: too few to split off a validation set")
    parts = {"train": docs[:-n_val], "val": docs[-n_val:]}
    if args.tokenizer == "bpe":  # trained on the training reviews only: val stays unseen
        tok = BPETokenizer.train("\n".join(parts["train"]), args.vocab_size, SPECIALS)
    else:
        tok = GPT2Tokenizer(args.gpt2_ranks, SPECIALS)
    splits, spans = {}, {}
    for split, split_docs in parts.items():
        encoded = tok.enc.encode_ordinary_batch(split_docs, num_threads=2)
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])  # +1: the <sep> after each review
        spans[split] = np.stack([starts, starts + lengths], axis=1)  # (n_docs, 2)
        splits[split] = np.fromiter((i for e in encoded for i in (*e, tok.sep_id)), dtype=np.int64)
    extra = {"source": str(path), "source_sha256": sha256_file(path),
             "cleaning": "<br /> -> space; \\x85 \\x96 \\x97 -> ellipsis, en dash, em dash; whitespace collapsed",
             "separator": "<sep> after every review"}
    meta = write_tokens(args.out_dir, splits, tok, documents=spans, extra=extra)
    for split in splits:
        print(f"wrote {args.out_dir / (split + '.bin')}: {meta['counts'][split]:,} tokens ({meta['dtype']}), "
              f"{meta['documents'][split]:,} reviews (spans in {split}_docs.bin)")
    print(f"wrote {args.out_dir / 'meta.json'}: {tok.kind} tokenizer, vocab_size {meta['vocab_size']}, "
          f"special tokens {tok.special_tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
