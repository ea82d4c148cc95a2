"""Labelled text for fine-tuning: read TSV / CSV / JSONL, tokenize, pad per batch, resume exactly.

Fine-tuning a pretrained encoder for classification (BERT, Devlin et al. 2019, https://arxiv.org/abs/1810.04805,
section 3.2 and 4.1; GPT, Radford et al. 2018, section 3.2) needs batches of (token ids, attention mask, label).
Each row is `[cls] text [sep]` when the tokenizer has those tokens (GPT-2: `<|endoftext|>` for both), truncated
to `max_len`, and right-padded with `pad_id` to the longest row *of its batch* (not of the dataset), so short
SST-2 sentences cost little. The attention mask is 1 on real tokens and 0 on padding.

Shuffling is a permutation drawn from a CPU torch.Generator seeded with (seed + epoch), so the order of any epoch
is a pure function of (seed, epoch): `state_dict()` = {"epoch", "position", "seed"} (JSON-safe ints) is all a
checkpoint needs to resume mid-epoch with exactly the remaining batches.

`stratified_sample` draws a seeded, class-stratified subset of the rows, for learning curves (accuracy against the
number of labelled examples; bench/label_efficiency.py): each class keeps its share of the rows, so a small sample
is not, by bad luck, mostly one class.

Left out on purpose: multi-label targets, streaming files larger than memory.
Explained in lectures/02_data.ipynb (and used in lectures/07_finetuning.ipynb).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from minilm.data import pad_rows, to_device


def _rows(path: Path, fmt: str):
    """Yield (line_number, dict row) from a TSV/CSV with a header line, or a JSONL file."""
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from e
                    if not isinstance(row, dict):
                        raise ValueError(f"{path}, line {lineno}: expected a JSON object per line")
                    yield lineno, row
            return
        # SST-2 contains quote characters inside sentences: for TSV, quotes are text, never field delimiters.
        if fmt == "tsv":
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        yield 1, header  # the header is passed on so the caller can check the columns
        for fields in reader:
            if not fields:
                continue
            if len(fields) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(fields)} fields but the header has "
                                 f"{len(header)} ({header})")
            yield reader.line_num, dict(zip(header, fields))


def read_labelled(path, text_column: str, label_column: str | None, labels=None, fmt: str | None = None):
    """Read a labelled text file. Returns (texts, label_ids, label_names).

    `fmt` is "tsv", "csv" or "jsonl" (default: from the suffix). `labels` fixes the label set and its order
    (id k = labels[k]); by default it is the sorted set of labels found. Texts are stripped. With
    `label_column=None` (an unlabelled test set) label_ids and label_names are None.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labelled data file {path} does not exist (did you run the dataset's prepare.py?)")
    fmt = fmt or {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower())
    if fmt not in ("tsv", "csv", "jsonl"):
        raise ValueError(f"cannot tell the format of {path}: pass fmt='tsv', 'csv' or 'jsonl'")
    texts, raw_labels = [], []
    rows = _rows(path, fmt)
    if fmt != "jsonl":
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header line and rows")
        for col in (text_column, label_column):
            if col is not None and col not in header[1]:
                raise ValueError(f"{path}: no column {col!r}; the header has {header[1]}")
    for lineno, row in rows:
        for col in (text_column, label_column):
            if col is not None and col not in row:
                raise ValueError(f"{path}, line {lineno}: no field {col!r}; it has {sorted(row)}")
        text = str(row[text_column] if row[text_column] is not None else "").strip()
        if not text:
            raise ValueError(f"{path}, line {lineno}: the row has no text in column {text_column!r}")
        texts.append(text)
        if label_column is not None:
            raw_labels.append((lineno, str(row[label_column]).strip()))
    if not texts:
        raise ValueError(f"{path} has no rows")
    if label_column is None:
        return texts, None, None
    label_names = list(labels) if labels is not None else sorted({lab for _, lab in raw_labels})
    to_id = {str(name): k for k, name in enumerate(label_names)}
    label_ids = []
    for lineno, lab in raw_labels:
        if lab not in to_id:
            raise ValueError(f"{path}, line {lineno}: label {lab!r} is not in the label set {label_names}")
        label_ids.append(to_id[lab])
    return texts, label_ids, [str(n) for n in label_names]


def stratified_sample(labels, n: int, seed: int) -> np.ndarray:
    """Indices (in file order) of a class-stratified random sample of `n` of the rows whose class ids are `labels`.

    Class k, holding c_k of the C rows, gets n_k = floor(n * c_k / C) rows; the n - sum(n_k) rows left over go one
    each to the classes with the largest remainders n * c_k / C - n_k (ties: the lower class id). This is the
    largest-remainder rounding: the n_k sum to n exactly and each is within one row of its proportional share.
    Within class k the rows taken are the first n_k of a permutation of its rows drawn from
    numpy.random.default_rng(seed), class by class in id order: the same seed gives the same rows, and with two
    classes a smaller sample is contained in a larger one of the same seed (the curve's points are nested).
    Example: labels with 6 of class 0 and 4 of class 1, n=5 -> 3 rows of class 0 and 2 of class 1.
    """
    y = np.asarray(labels)
    if not 1 <= n <= len(y):
        raise ValueError(f"a sample of {n} rows needs 1 <= n <= {len(y)} (the number of rows)")
    classes, counts = np.unique(y, return_counts=True)  # (K,), (K,)
    share = n * counts / len(y)  # the proportional shares, (K,)
    n_k = np.floor(share).astype(np.int64)
    leftover = n - int(n_k.sum())
    by_remainder = sorted(range(len(classes)), key=lambda k: (-(share[k] - n_k[k]), k))  # stable: lower id first
    n_k[by_remainder[:leftover]] += 1
    if (n_k == 0).any():
        empty = classes[n_k == 0].tolist()
        raise ValueError(f"a sample of {n} rows leaves class(es) {empty} without a row: take a larger sample")
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, n_k)]
    return np.sort(np.concatenate(rows))


class ClassificationBatches:
    """Seeded, resumable batches of (idx, attention_mask, labels); iterate for the rest of the current epoch.

    idx, attention_mask: (B, T) int64 with T = longest row of the batch (<= max_len); labels: (B,) int64
    (None for unlabelled data). `n_truncated` counts the rows cut to max_len.
    """

    def __init__(self, texts, labels, tokenizer, batch_size: int, max_len: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, pad_id: int | None = None, device="cpu",
                 bucket: int = 0):
        if labels is not None and len(labels) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        head, tail, room = self._start(tokenizer, batch_size, max_len, shuffle, seed, drop_last, device, bucket,
                                       pad_id, "text")
        rows, self.n_truncated = [], 0
        for text in texts:
            ids = tokenizer.encode(text)
            self.n_truncated += len(ids) > room
            rows.append(head + ids[:room] + tail)
        self._pack(rows)
        self.labels = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)

    def _start(self, tokenizer, batch_size: int, max_len: int, shuffle: bool, seed: int, drop_last: bool, device,
               bucket: int, pad_id: int | None, what: str) -> tuple[list[int], list[int], int]:
        """Check and set the fields order(), batch() and state_dict() read (also tagging.TokenBatches'); returns
        (head, tail, room): the special ids around every row and how many tokens of `what` fit between them."""
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size and max_len must be >= 1, got {batch_size}, {max_len}")
        self.batch_size, self.max_len, self.shuffle, self.drop_last = batch_size, max_len, shuffle, drop_last
        self.seed, self.epoch, self.position = int(seed), 0, 0
        self.bucket = bucket  # > 0: group rows of similar length, `bucket` batches at a time (see order())
        self.device = device
        # Pad with <pad> when there is one; any id works otherwise, since the attention mask hides it.
        self.pad_id = pad_id if pad_id is not None else (tokenizer.pad_id if tokenizer.pad_id is not None else 0)
        head = [tokenizer.cls_id] if tokenizer.cls_id is not None else []
        tail = [tokenizer.sep_id] if tokenizer.sep_id is not None else []
        room = max_len - len(head) - len(tail)
        if room < 1:
            raise ValueError(f"max_len={max_len} leaves no room for {what} after the special tokens")
        return head, tail, room

    def _pack(self, rows: list[list[int]]) -> None:
        """One flat array + offsets instead of a list of lists: compact, and slicing is cheap."""
        self.lengths = np.array([len(r) for r in rows], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(self.offsets[-1]))

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The row order of an epoch: a pure function of (seed, epoch).

        With `bucket` = k > 0 the shuffled rows are cut into windows of k batches, each window is sorted by length
        (so a batch holds rows of similar length and pads little: SST-2 phrases run from 1 to 50+ tokens), and the
        order of the full batches is shuffled again; the rows in each batch stay random across epochs.
        """
        if not self.shuffle:
            return torch.arange(len(self.lengths))
        g = torch.Generator().manual_seed(self.seed + epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        if not self.bucket:
            return perm
        lengths = torch.from_numpy(self.lengths)
        windows = perm.split(self.bucket * self.batch_size)
        rows = torch.cat([w[torch.argsort(lengths[w], stable=True)] for w in windows])
        n_full = len(rows) // self.batch_size
        batches = rows[: n_full * self.batch_size].view(n_full, self.batch_size)  # (n_full, batch_size)
        shuffled = batches[torch.randperm(n_full, generator=g)].flatten()
        return torch.cat([shuffled, rows[n_full * self.batch_size:]])  # a partial batch stays last

    def batch(self, rows) -> tuple:
        rows = [int(r) for r in rows]
        idx, attention_mask = pad_rows([self.flat[self.offsets[r] : self.offsets[r + 1]] for r in rows],
                                       self.pad_id)  # (B, T) each, T = the longest row of this batch
        labels = None if self.labels is None else self.labels[rows]  # (B,)
        return (to_device(idx, self.device), to_device(attention_mask, self.device),
                None if labels is None else to_device(labels, self.device))

    def __iter__(self):
        if self.position >= len(self):  # the previous loop stopped right after the last batch
            self.epoch, self.position = self.epoch + 1, 0
        order = self.order(self.epoch)
        while self.position < len(self):
            b = self.position
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            self.position += 1  # advanced before yielding: a checkpoint taken now resumes after this batch
            yield self.batch(rows)
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        for key in ("epoch", "position", "seed"):
            if not isinstance(state.get(key), int) or state[key] < 0:
                raise ValueError(f"ClassificationBatches state needs a non-negative int {key!r}, got {state.get(key)!r}")
        if state["position"] > len(self):
            raise ValueError(f"position {state['position']} is past the {len(self)} batches of an epoch")
        self.epoch, self.position, self.seed = state["epoch"], state["position"], state["seed"]
