"""Exercise for lectures/05_model.ipynb: the next-token cross-entropy loss that trains a causal LM.

Write the body; keep the signature as it is (a test compares it with minilm/model.py). Check your work:

    pytest tests/exercises/test_model_exercises.py --impl=exercises     # or: python -m minilm.grade

The test compares with F.cross_entropy and with the loss of a uniform guess, ln V.
Shapes: B batch, T sequence, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (F.log_softmax, F.cross_entropy)

IGNORE_INDEX = -100  # targets equal to this are padding or unmasked positions: they add nothing to the loss


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Exercise model.py::next_token_loss (Eq. 2.2): mean of -log p(x_{t+1} | x_<=t) over the counted positions.

    logits: (B, T, V), the model's scores at every position; targets: (B, T) int64, the inputs shifted left by one,
    with IGNORE_INDEX (-100) at positions that must not count. Return a scalar tensor: the mean over the counted
    positions only (not over all B * T), computed in float32 even if the logits are bfloat16.

    Hints: write it once by hand: log_probs = F.log_softmax(logits, dim=-1); pick each target's entry with
    .gather(-1, targets[..., None]) (replace -100 by 0 first, then drop those positions); negate and average.
    Then see that F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=-100) agrees.
    """
    raise NotImplementedError("exercise model.py::next_token_loss is not attempted yet")
