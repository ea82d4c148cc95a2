"""Exercises for lectures/05_model.ipynb: top-k and top-p (nucleus) filtering of the next-token logits.

Write each body; keep every signature as it is (a test compares it with minilm/sampling.py). Check your work:

    pytest tests/exercises/test_sampling_exercises.py --impl=exercises     # or: python -m minilm.grade

Both return new logits of the same shape, (B, V), with the dropped tokens set to -inf (softmax then gives them
probability 0); they must not change the tensor they are given.
"""

from __future__ import annotations

import torch


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Exercise sampling.py::top_k_filter (Eq. 5.8): keep the k largest logits of each row, the rest -> -inf.

    logits: (B, V). Logits equal to the k-th largest are kept too (ties). k >= V keeps everything; k <= 0 raises
    ValueError. Example: [[1., 3., 2., 5.]], k=2 -> [[-inf, 3., -inf, 5.]].

    Hints: torch.topk(logits, k, dim=-1).values[..., -1:] is the k-th largest of each row, (B, 1);
    logits.masked_fill(logits < kth, float("-inf")).
    """
    raise NotImplementedError("exercise sampling.py::top_k_filter is not attempted yet")


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Exercise sampling.py::top_p_filter (Eq. 5.9): keep the nucleus, the most likely tokens reaching mass p.

    logits: (B, V). In order of decreasing probability, a token is kept while the probability of the tokens *before*
    it is still below p; so the most likely token is always kept, and p = 1.0 keeps every token. p outside (0, 1]
    raises ValueError. Example: probabilities [0.15, 0.5, 0.05, 0.3] with p = 0.75 keep 0.5 and 0.3 (0.5 < 0.75 is
    not enough, 0.5 + 0.3 is).

    Hints: torch.sort(logits, dim=-1, descending=True) returns the sorted values and their positions; probabilities
    by softmax; mass before = cumsum - probs; then put the keep/drop decision back in vocabulary order with
    torch.zeros_like(...).scatter(-1, order, drop_sorted).
    """
    raise NotImplementedError("exercise sampling.py::top_p_filter is not attempted yet")
