"""Data for language modelling: token files on disk, causal-LM windows, masked-LM batches.

A prepared dataset (data/<name>/prepare.py) is a folder with `train.bin` / `val.bin` (token ids as raw uint16,
or uint32 when the vocabulary exceeds 65,535), read with `np.memmap` so a corpus never becomes a Python list, plus
`meta.json` holding the tokenizer (`tokenizer_from_dict(meta["tokenizer"])`), the dtype and the token counts.
Datasets of separate documents (IMDB reviews) also have `<split>_docs.bin`: int64 (start, end) per document.

- Causal LM (GPT-2 paper, Radford et al. 2019, section 2): the next-token factorisation
  Eq. 2.1  p(x_1..x_T) = prod_t p(x_t | x_<t),  trained with  Eq. 2.2  L = -(1/N) sum_{b,t} log p(x_{b,t+1} | x_{b,<=t})
  over the N targets that are not IGNORE_INDEX (p(x_1) is never computed: every target has a context), so a
  batch is a random window x = data[i : i+T] and its shift y = data[i+1 : i+T+1].
- Masked LM (BERT, Devlin et al. 2019, https://arxiv.org/abs/1810.04805, section 3.1):
  Eq. 2.3  L = -(1/|M|) sum_{i in M} log p(x_i | x_{\\M}), over a random set M of 15% of the (non-special,
  non-pad) positions, where (Eq. 2.4) each selected token becomes <mask> with prob. 0.8, a random non-special
  token with prob. 0.1, and stays unchanged with prob. 0.1; targets are IGNORE_INDEX outside M.
  Batches are packed windows that start with [cls] (`get_mlm_batch`) or one document per row, padded, with an
  attention mask (`get_mlm_document_batch`).
Labelled text for fine-tuning (`read_labelled`, `ClassificationBatches`) lives in minilm/labelled.py, which pads
its rows with `pad_rows` from here.

Randomness comes from a CPU `torch.Generator` the caller owns (its state is a tensor a checkpoint can save).
Left out on purpose: BERT's next-sentence prediction, whole-word masking, dynamic padding buckets.
Explained in lectures/02_data.ipynb.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from minilm.config import IGNORE_INDEX
from minilm.files import atomic_write, atomic_write_text

META = "meta.json"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits (vocab_size <= 65,535), else uint32: half the disk and page cache."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def write_tokens(data_dir, splits: dict, tokenizer, documents: dict | None = None, extra: dict | None = None) -> dict:
    """Write `<split>.bin` for each split (and `<split>_docs.bin` (n, 2) int64 (start, end) spans), then meta.json.

    `splits` maps a split name to a 1-D array of token ids. Every file is written atomically (minilm/files.py);
    meta.json goes last, so a crash never leaves a meta.json describing missing data.
    Returns the meta dict.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    V = tokenizer.vocab_size
    dtype = token_dtype(V)
    meta = {"format": "minilm-tokens-1", "tokenizer": tokenizer.to_dict(), "vocab_size": V,
            "dtype": dtype.name, "counts": {}, "documents": {}}
    for split, ids in splits.items():
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"split {split!r}: expected a 1-D array of token ids, got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"split {split!r}: ids must lie in [0, {V}), got [{ids.min()}, {ids.max()}]")
        atomic_write(data_dir / f"{split}.bin", ids.astype(dtype).tofile)
        meta["counts"][split] = int(ids.size)
    for split, spans in (documents or {}).items():
        spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        n = meta["counts"].get(split)
        if n is None or (spans.size and (spans.min() < 0 or spans.max() > n or (spans[:, 1] < spans[:, 0]).any())):
            raise ValueError(f"documents for split {split!r} must be (start, end) spans inside its {n} tokens")
        atomic_write(data_dir / f"{split}_docs.bin", spans.tofile)
        meta["documents"][split] = int(len(spans))
    meta.update(extra or {})
    atomic_write_text(data_dir / META, json.dumps(meta, indent=1))
    return meta


def load_meta(data_dir) -> dict:
    path = Path(data_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the dataset's prepare.py first "
                                f"(e.g. python data/shakespeare_char/prepare.py)")
    return json.loads(path.read_text(encoding="utf-8"))


def _checked_memmap(path: Path, dtype, count: int, what: str, shape=None) -> np.memmap:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist but meta.json lists it: re-run prepare.py")
    expected = count * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path.name} has {size} bytes but meta.json says {count} {what} "
                         f"({expected} bytes as {np.dtype(dtype).name}): re-run prepare.py")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape or (count,))


def load_split(data_dir, split: str) -> np.memmap:
    """The token ids of one split as a read-only memmap, after checking its size against meta.json."""
    meta = load_meta(data_dir)
    if split not in meta["counts"]:
        raise ValueError(f"split {split!r} not in {Path(data_dir) / META}; it has {sorted(meta['counts'])}")
    return _checked_memmap(Path(data_dir) / f"{split}.bin", np.dtype(meta["dtype"]), meta["counts"][split], "tokens")


def load_documents(data_dir, split: str) -> np.memmap:
    """(n_docs, 2) int64 (start, end) spans of the documents in `<split>.bin`."""
    meta = load_meta(data_dir)
    n = meta.get("documents", {}).get(split)
    if n is None:
        raise ValueError(f"{Path(data_dir) / META} has no document spans for split {split!r}: "
                         f"this dataset was prepared as one stream (use packed windows)")
    return _checked_memmap(Path(data_dir) / f"{split}_docs.bin", np.int64, 2 * n, "int64 span values", shape=(n, 2))


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """Move a CPU batch to `device`; on CUDA through pinned memory so the copy can overlap compute."""
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _random_windows(data: np.ndarray, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length) windows data[i : i + length], every start i in 0 .. len(data) - length equally likely."""
    if len(data) < length:
        raise ValueError(f"split has {len(data)} tokens, too few for windows of {length}: use a shorter "
                         f"max_seq_len or more data")
    starts = torch.randint(len(data) - length + 1, (batch_size,), generator=generator).tolist()
    return torch.from_numpy(np.stack([data[i : i + length].astype(np.int64) for i in starts]))  # (B, length)


def get_causal_batch(data: np.ndarray, batch_size: int, max_seq_len: int, generator: torch.Generator,
                     device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows for Eq. 2.1-2.2: x = data[i : i+T], y = data[i+1 : i+T+1], both (B, T), T = max_seq_len."""
    xy = _random_windows(data, batch_size, max_seq_len + 1, generator)  # (B, T+1)
    x, y = xy[:, :-1], xy[:, 1:]  # (B, T) each; y is x shifted left by one
    return to_device(x.contiguous(), device), to_device(y.contiguous(), device)


def mask_tokens(idx: torch.Tensor, mask_id: int, vocab_size: int, special_ids, generator: torch.Generator,
                mask_prob: float = 0.15, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking (Eq. 2.4) on a CPU (B, T) batch; returns (inputs, targets), targets IGNORE_INDEX outside M.

    Positions holding a special id (pad, cls, sep, mask, ...) or with attention_mask == 0 are never selected;
    random replacements are drawn uniformly from the non-special ids.
    """
    special = torch.as_tensor(sorted(set(int(i) for i in special_ids) | {int(mask_id)}), dtype=torch.long)
    eligible = ~torch.isin(idx, special)  # (B, T)
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    selected = (torch.rand(idx.shape, generator=generator) < mask_prob) & eligible  # the set M, ~15%
    targets = torch.where(selected, idx, torch.full_like(idx, IGNORE_INDEX))  # (B, T)
    r = torch.rand(idx.shape, generator=generator)  # one draw decides mask / random / keep
    to_mask = selected & (r < 0.8)  # 80%: <mask>  (Devlin et al., section 3.1)
    to_random = selected & (r >= 0.8) & (r < 0.9)  # 10%: a random token; the remaining 10% stay unchanged
    normal = torch.ones(vocab_size, dtype=torch.bool)
    normal[special[special < vocab_size]] = False
    normal_ids = normal.nonzero().squeeze(1)  # (V - n_special,)
    random_ids = normal_ids[torch.randint(len(normal_ids), idx.shape, generator=generator)]  # (B, T)
    inputs = torch.where(to_mask, torch.full_like(idx, mask_id), idx)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, targets


def _mlm_ids(tokenizer) -> dict:
    if tokenizer.mask_id is None:
        raise ValueError(f"{tokenizer!r} has no '<mask>' token: build it with special_tokens=('pad', 'mask', 'cls', 'sep')")
    return {"mask_id": tokenizer.mask_id, "vocab_size": tokenizer.vocab_size, "special_ids": tokenizer.special_ids}


def get_mlm_batch(data: np.ndarray, batch_size: int, max_seq_len: int, generator: torch.Generator, tokenizer,
                  device="cpu", mask_prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed windows for Eq. 2.3: random (B, T) windows of the token stream (T = max_seq_len), masked by Eq. 2.4.

    When the tokenizer has a [cls] token, every row is [cls] followed by T-1 tokens of the stream, as every BERT
    input starts with [CLS] (Devlin et al., section 3): fine-tuning reads `[cls] text [sep]`, so the token it puts
    first, and pools with `--pooling cls`, has been trained in that place. [cls] is special, so never masked.
    """
    cls_id = tokenizer.cls_id
    if cls_id is None:
        x = _random_windows(data, batch_size, max_seq_len, generator)  # (B, T)
    else:
        if max_seq_len < 2:
            raise ValueError(f"max_seq_len={max_seq_len} leaves no room for text after [cls]")
        body = _random_windows(data, batch_size, max_seq_len - 1, generator)  # (B, T-1)
        x = torch.cat([torch.full((batch_size, 1), cls_id, dtype=body.dtype), body], dim=1)  # (B, T)
    inputs, targets = mask_tokens(x, generator=generator, mask_prob=mask_prob, **_mlm_ids(tokenizer))
    return to_device(inputs, device), to_device(targets, device)


def get_document_batch(data: np.ndarray, documents: np.ndarray, doc_indices, max_len: int, pad_id: int,
                       cls_id: int | None = None, sep_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One document per row: [cls] doc[:room] [sep], right-padded with pad_id to the longest row.

    Returns CPU (idx, attention_mask), both (B, T) int64, T <= max_len; attention_mask is 1 on real tokens.
    """
    extra = (cls_id is not None) + (sep_id is not None)
    room = max_len - extra
    if room < 1:
        raise ValueError(f"max_len={max_len} leaves no room for text after the special tokens")
    rows = []
    for doc in doc_indices:
        start, end = (int(v) for v in documents[int(doc)])
        body = data[start : min(end, start + room)].astype(np.int64).tolist()
        rows.append(([cls_id] if cls_id is not None else []) + body + ([sep_id] if sep_id is not None else []))
    return pad_rows(rows, pad_id)


def pad_rows(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows of token ids (lists or 1-D arrays) to the longest: CPU (idx, attention_mask), both (B, T)
    int64, attention_mask 1 on real tokens and 0 on padding."""
    T = max(len(row) for row in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), T), dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        idx[b, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[b, : len(row)] = 1
    return idx, attention_mask


def get_mlm_document_batch(data: np.ndarray, documents: np.ndarray, batch_size: int, max_len: int,
                           generator: torch.Generator, tokenizer, device="cpu", mask_prob: float = 0.15):
    """Random documents (one per row, [cls] ... [sep], padded) masked by Eq. 2.4: (inputs, targets, attention_mask)."""
    if tokenizer.pad_id is None:
        raise ValueError(f"{tokenizer!r} has no '<pad>' token: build it with special_tokens=('pad', 'mask', 'cls', 'sep')")
    doc_indices = torch.randint(len(documents), (batch_size,), generator=generator).tolist()
    idx, attention_mask = get_document_batch(data, documents, doc_indices, max_len, tokenizer.pad_id,
                                             tokenizer.cls_id, tokenizer.sep_id)  # (B, T) each
    inputs, targets = mask_tokens(idx, generator=generator, mask_prob=mask_prob, attention_mask=attention_mask,
                                  **_mlm_ids(tokenizer))
    return to_device(inputs, device), to_device(targets, device), to_device(attention_mask, device)
