"""Exercises for lectures/01_tokenizer.ipynb: the two steps byte-pair encoding repeats, count pairs and merge.

Write each body; keep every signature as it is (a test compares it with minilm/bpe.py). Check your work:

    pytest tests/exercises/test_bpe_exercises.py --impl=exercises     # or: python -m minilm.grade

One BPE training step is: counts = get_pair_counts(ids); pair = the most frequent pair; ids = merge(ids, pair, t)
with a new id t (Eq. 1.2). Plain Python lists and dicts, no tensors.
"""

from __future__ import annotations


def get_pair_counts(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Exercise bpe.py::get_pair_counts (Eq. 1.1): how often each adjacent pair of ids occurs.

    Return a dict {(a, b): count} over the pairs (ids[i], ids[i + 1]); each occurrence adds `weight` (a chunk of
    text seen n times is counted once with weight n). When `counts` is given, add into it and return that same
    dict; otherwise start from an empty one. Example: [1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}.

    Hints: zip(ids, ids[1:]) walks the adjacent pairs; counts.get(pair, 0).
    """
    raise NotImplementedError("exercise bpe.py::get_pair_counts is not attempted yet")


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Exercise bpe.py::merge (Eq. 1.2): replace every occurrence of `pair` in `ids` by the single id `new_id`.

    Scan left to right; once a pair is merged, its second element cannot start another pair, so
    merge([1, 1, 1], (1, 1), 9) == [9, 1]. Return a new list; leave `ids` unchanged.
    Example: merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4].

    Hints: a while loop with an index i that steps by 2 after a merge and by 1 otherwise; watch the last element.
    """
    raise NotImplementedError("exercise bpe.py::merge is not attempted yet")
