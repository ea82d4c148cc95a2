"""Exercise for lectures/02_data.ipynb: BERT's masking of the input for masked-language-model training.

Write the body; keep the signature as it is (a test compares it with minilm/data.py). Check your work:

    pytest tests/exercises/test_data_exercises.py --impl=exercises     # or: python -m minilm.grade

The randomness is yours to arrange, so the tests check rates and rules on a large batch, not exact ids.
Shapes: B batch, T sequence.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # the target at positions that are not predicted


def mask_tokens(idx: torch.Tensor, mask_id: int, vocab_size: int, special_ids, generator: torch.Generator,
                mask_prob: float = 0.15, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise data.py::mask_tokens (Eq. 2.4): choose the set M of positions to predict, and corrupt them.

    idx: (B, T) int64 token ids. Returns (inputs, targets), both (B, T) int64:
      - each position is selected into M with probability mask_prob, except positions holding mask_id or one of
        special_ids (pad, cls, sep, ...) and positions where attention_mask == 0 (when it is given);
      - targets = the original id on M, IGNORE_INDEX elsewhere;
      - inputs = idx, except on M: 80% of M becomes mask_id, 10% a random id drawn uniformly from the ids that are
        not special (not mask_id, not in special_ids, < vocab_size), 10% stays unchanged (Devlin et al. 2019, 3.1).
    Draw every random number from `generator`, so the same seed gives the same batch.

    Hints: torch.rand(idx.shape, generator=generator) < mask_prob; torch.isin(idx, special) for the special
    positions; one more uniform draw r per position splits M into r < 0.8, 0.8 <= r < 0.9, r >= 0.9;
    torch.where(cond, a, b) builds the outputs without loops.
    """
    raise NotImplementedError("exercise data.py::mask_tokens is not attempted yet")
