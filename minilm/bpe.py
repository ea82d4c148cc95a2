"""Byte-level byte-pair encoding (BPE), written out: pre-split, count pairs, merge, repeat.

BPE (Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words with Subword Units",
https://arxiv.org/abs/1508.07909, section 3.2) starts from a base alphabet and repeatedly adds the most
frequent adjacent pair of symbols as a new symbol. GPT-2 (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners", section 2.2) makes it *byte-level* (the base alphabet is the 256 byte
values, so any string can be encoded and nothing is ever unknown) and forbids merges across a regex
pre-split (letters, digits, punctuation and whitespace runs are separate chunks, so "dog." and "dog!" share
the token "dog"). This module holds the algorithm only; `minilm.tokenizer.BPETokenizer` wraps it with
special tokens, JSON save/load, and a fast encoder through `tiktoken`.

    Eq. 1.1   pair counts   c(a, b) = sum over chunks w of  n(w) * #{i : w_i = a, w_{i+1} = b}
    Eq. 1.2   merge step    (a*, b*) = argmax_{(a, b)} c(a, b);  new id t = 256 + k;  w <- merge(w, (a*, b*), t)
    Eq. 1.3   encoding      repeatedly merge the adjacent pair whose bytes have the lowest rank (tiktoken's rule)

Two trainers learn the same merges in the same order (tested equal on Tiny Shakespeare):
`train_bpe_naive` is the loop to read first (as minbpe's basic.py: count every pair, merge the most frequent,
repeat); `train_bpe`, the one the tokenizer uses, keeps the pair counts of Eq. 1.1 up to date incrementally
(only chunks that contain the merged pair are touched) and picks the argmax of Eq. 1.2 with a heap whose stale
entries are skipped. Both work on *unique* chunks with their counts n(w) and break ties by the smallest pair
of ids, so training is deterministic.

Pre-split: the exact GPT-2 pattern (tiktoken's `r50k_base`), which needs Unicode classes (\\p{L}, \\p{N})
that Python's `re` lacks; we use the `regex` module, which tiktoken itself depends on (so it is always
installed with tiktoken). Using the same pattern in the hand-written encoder and in tiktoken is what makes
their ids identical (tested in tests/test_tokenizer.py).

Left out on purpose: GPT-2's byte-to-unicode remapping (only needed to store merges as text; we store
bytes as base64), dropout-BPE, and parallel training.
Explained in lectures/01_tokenizer.ipynb.
"""

from __future__ import annotations

import heapq
from collections import Counter

import regex

# The GPT-2 split pattern, verbatim from tiktoken's r50k_base / gpt2 encoding.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def pre_split(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split text into chunks that BPE never merges across (GPT-2 paper, section 2.2)."""
    return regex.findall(pattern, text)


def get_pair_counts(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Eq. 1.1 for one sequence: how often each adjacent pair occurs (times `weight`), added into `counts`."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` (scanning left to right) by `new_id` (Eq. 1.2)."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe_naive(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> list[tuple[int, int]]:
    """Eq. 1.1-1.2 as plainly as they can be written: count the pairs, merge the most frequent, repeat.

    One round on the chunk ids = [1, 2, 3, 1, 2]: get_pair_counts -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}; the most
    frequent pair (1, 2) becomes token 256: merge(ids, (1, 2), 256) -> [256, 3, 256]; the next round counts again.
    Every round recounts every chunk, so it is slow on a large text; `train_bpe` returns the same merges faster.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
    chunk_counts = Counter(pre_split(text, pattern))  # each distinct chunk once, with its count n(w)
    words = {chunk: list(chunk.encode("utf-8")) for chunk in chunk_counts}  # its ids, merged as we go
    token_bytes = [bytes([b]) for b in range(256)]
    merges: list[tuple[int, int]] = []
    while len(token_bytes) < vocab_size:
        counts: dict[tuple[int, int], int] = {}
        for chunk, n in chunk_counts.items():
            get_pair_counts(words[chunk], counts, n)  # Eq. 1.1
        # a pair whose bytes are already a token (reachable through another split) cannot become a second one
        candidates = [p for p in counts if token_bytes[p[0]] + token_bytes[p[1]] not in token_bytes]
        if not candidates:
            break
        pair = min(candidates, key=lambda p: (-counts[p], p))  # Eq. 1.2: the most frequent; ties: smallest ids
        if counts[pair] < 2:
            break  # a pair seen once: nothing left worth learning
        merges.append(pair)
        token_bytes.append(token_bytes[pair[0]] + token_bytes[pair[1]])
        words = {chunk: merge(ids, pair, len(token_bytes) - 1) for chunk, ids in words.items()}
    return merges


def train_bpe(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> list[tuple[int, int]]:
    """Learn `vocab_size - 256` merges on `text`; merge k creates token id 256 + k. The fast twin of
    `train_bpe_naive`: the same merges, with pair counts updated incrementally instead of recounted.

    Returns the merges in the order learned. Stops early (fewer merges) if no pair occurs twice any more.
    A pair whose concatenated bytes already exist as a token (possible, rarely, via another split such as
    (ab, c) vs (a, bc)) is skipped, so every token id has distinct bytes: tiktoken requires that.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be >= 256 (the byte alphabet), got {vocab_size}")
    chunk_counts = Counter(pre_split(text, pattern))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # unique chunks as byte ids
    freqs = list(chunk_counts.values())  # n(w) in Eq. 1.1

    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}  # pair -> indices of the chunks that contain it
    for w, (ids, n) in enumerate(zip(words, freqs)):
        get_pair_counts(ids, pair_counts, n)
        for pair in zip(ids, ids[1:]):
            where.setdefault(pair, set()).add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items()]  # max-heap on count, then smallest pair
    heapq.heapify(heap)

    token_bytes = [bytes([b]) for b in range(256)]
    known = set(token_bytes)
    merges: list[tuple[int, int]] = []
    banned: set[tuple[int, int]] = set()
    while len(token_bytes) < vocab_size and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count or pair in banned:
            continue  # a stale heap entry: the count changed after it was pushed
        if -neg_count < 2:
            break  # Eq. 1.2 would merge a pair seen once: nothing left worth learning
        new_bytes = token_bytes[pair[0]] + token_bytes[pair[1]]
        if new_bytes in known:
            banned.add(pair)
            continue
        new_id = len(token_bytes)
        merges.append(pair)
        token_bytes.append(new_bytes)
        known.add(new_bytes)
        changed: set[tuple[int, int]] = set()
        for w in sorted(where.pop(pair)):
            before, n = words[w], freqs[w]
            after = merge(before, pair, new_id)
            for p in zip(before, before[1:]):  # remove this chunk's old pairs from Eq. 1.1 ...
                pair_counts[p] -= n
                changed.add(p)
            for p in zip(after, after[1:]):  # ... and add its new ones
                pair_counts[p] = pair_counts.get(p, 0) + n
                changed.add(p)
            for p in set(zip(before, before[1:])) - set(zip(after, after[1:])):
                if p in where:
                    where[p].discard(w)
            for p in zip(after, after[1:]):
                where.setdefault(p, set()).add(w)
            words[w] = after
        for p in changed:
            c = pair_counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_counts.pop(p, None)
                where.pop(p, None)
    return merges


def merges_to_bytes(merges: list[tuple[int, int]]) -> list[bytes]:
    """The byte string of every token id: 256 single bytes, then one per merge."""
    token_bytes = [bytes([b]) for b in range(256)]
    for a, b in merges:
        if not (0 <= a < len(token_bytes) and 0 <= b < len(token_bytes)):
            raise ValueError(f"merge ({a}, {b}) refers to an id not yet defined (only {len(token_bytes)} ids so far)")
        token_bytes.append(token_bytes[a] + token_bytes[b])
    return token_bytes


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Eq. 1.3 on one pre-split chunk: the hand-written twin of tiktoken's `_byte_pair_merge`.

    Repeatedly merge the adjacent pair whose concatenated bytes have the lowest rank (the leftmost one on a
    tie) until no adjacent pair is a token. Like tiktoken, a chunk that is itself a token is returned whole.
    """
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_i, best_rank = -1, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_i, best_rank = i, rank
        if best_rank is None:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[p] for p in parts]


def encode_ordinary(text: str, ranks: dict[bytes, int], pattern: str = GPT2_SPLIT_PATTERN,
                    cache: dict | None = None) -> list[int]:
    """Hand-written byte-level BPE encoding of plain text: pre-split, then Eq. 1.3 per chunk (memoised)."""
    cache = {} if cache is None else cache
    out: list[int] = []
    for chunk in pre_split(text, pattern):
        ids = cache.get(chunk)
        if ids is None:
            ids = cache[chunk] = encode_piece(chunk.encode("utf-8"), ranks)
        out.extend(ids)
    return out
