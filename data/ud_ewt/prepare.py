"""UD English-EWT for part-of-speech tagging: the CoNLL-U files + meta.json here, and the training sentences' text
(without tags) as train.bin / val.bin, so train.py can pretrain on the task's own domain.

Source: the Universal Dependencies English Web Treebank (Silveira et al. 2014, "A Gold Standard Dependency Corpus
for English", LREC; CC BY-SA 4.0), repository UniversalDependencies/UD_English-EWT at a pinned commit, checked
against the files' sha256; or --source DIR, a folder holding en_ewt-ud-{train,dev,test}.conllu (12,544 / 2,001 /
2,077 sentences). Tags: the 17 Universal POS tags (UPOS, CoNLL-U column 4); minilm/tagging.py reads them and skips
comments, multi-word token ranges (`19-20 don't`) and empty nodes (`8.1`).

Output: the three .conllu files (copied), and one meta.json read by both scripts: `files` and `labels` for
`finetune.py --task token --data data/ud_ewt`, and the token files for `train.py --data data/ud_ewt`: a byte-level
BPE trained here on the training sentences, each sentence written as its words joined by spaces (exactly the
tokens finetune.py feeds the tagger, minilm/tagging.py's encode_words) followed by <sep>; val.bin is the dev
sentences. No test text is seen before the test set is scored. Explained in lectures/11_token_classification.ipynb.

    python data/ud_ewt/prepare.py                          # download at the pinned commit
    python data/ud_ewt/prepare.py --source PATH/TO/ud_ewt --vocab-size 4096
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
from minilm.files import atomic_write_bytes, fetch, sha256_file
from minilm.tagging import read_tagged
from minilm.tokenizer import BPETokenizer

COMMIT = "15d613d8447b3478787d4c278730a1e48a945efb"  # 2025-05-10, "Updated treebank evaluation"
URL = f"https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/{COMMIT}/{{name}}"
SHA256 = {
    "en_ewt-ud-train.conllu": "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
    "en_ewt-ud-dev.conllu": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
    "en_ewt-ud-test.conllu": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
}
SPLITS = {"train": "en_ewt-ud-train.conllu", "dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}
UPOS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ",
        "SYM", "VERB", "X"]  # https://universaldependencies.org/u/pos/
SPECIALS = ("pad", "mask", "cls", "sep")
HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, help="a folder with en_ewt-ud-{train,dev,test}.conllu (else: download)")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where to write the .conllu, .bin files and meta.json")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary before the 4 special tokens")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main("", lambda: prepare(args))


def find_files(source: Path | None, raw_dir: Path) -> dict[str, Path]:
    """The three CoNLL-U files: downloaded at the pinned commit (sha256 checked), or from --source."""
    if source is None:
        return {n: fetch(URL.format(name=n), raw_dir / n, sha) for n, sha in SHA256.items()}
    if not source.is_dir():
        raise FileNotFoundError(f"--source {source} is not a folder: pass the folder holding {list(SHA256)}")
    missing = [n for n in SHA256 if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} lacks {missing}: expected UD English-EWT's three .conllu files")
    for n, sha in SHA256.items():
        if sha256_file(source / n) != sha:
            print(f"note: {source / n} is not the file of commit {COMMIT[:10]} (sha256 differs); using it anyway")
    return {n: source / n for n in SHA256}


def prepare(args) -> int:
    if args.vocab_size < 256:
        raise ValueError(f"--vocab-size must be >= 256 (the byte alphabet), got {args.vocab_size}")
    out = args.out_dir
    paths = find_files(args.source, out / "raw")
    words, counts = {}, {}
    for split, name in SPLITS.items():
        words[split], _, _ = read_tagged(paths[name], UPOS)  # every tag checked against UPOS here, once
        counts[split] = len(words[split])
        if paths[name].resolve() != (out / name).resolve():
            atomic_write_bytes(out / name, paths[name].read_bytes())
    # The pretraining text: the sentences as the tagger will read them (words joined by spaces), no tags
    text = {split: [" ".join(s) for s in words[split]] for split in ("train", "dev")}
    tok = BPETokenizer.train("\n".join(text["train"]), args.vocab_size, SPECIALS)
    splits, spans = {}, {}
    for split, bin_name in (("train", "train"), ("dev", "val")):
        encoded = tok.enc.encode_ordinary_batch(text[split], num_threads=2)
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])  # +1: the <sep> after each sentence
        spans[bin_name] = np.stack([starts, starts + lengths], axis=1)  # (n_sentences, 2)
        splits[bin_name] = np.fromiter((i for e in encoded for i in (*e, tok.sep_id)), dtype=np.int64)
    extra = {"task": "token", "files": SPLITS, "labels": UPOS, "sentences": counts, "commit": COMMIT,
             "source": str(args.source or URL.format(name="")), "separator": "<sep> after every sentence",
             "text": "train.bin: the training sentences' words joined by spaces, no tags; val.bin: the dev sentences"}
    meta = write_tokens(out, splits, tok, documents=spans, extra=extra)
    for split, name in SPLITS.items():
        print(f"wrote {out / name}: {counts[split]:,} sentences")
    for split in splits:
        print(f"wrote {out / (split + '.bin')}: {meta['counts'][split]:,} tokens of untagged text")
    print(f"wrote {out / 'meta.json'}: {len(UPOS)} UPOS tags, {tok.kind} tokenizer, vocab_size {meta['vocab_size']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
