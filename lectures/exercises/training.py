"""Exercise for lectures/06_training.ipynb: the learning-rate schedule, linear warmup then cosine decay.

Write the body; keep the signature as it is (a test compares it with minilm/training.py). Check your work:

    pytest tests/exercises/test_training_exercises.py --impl=exercises     # or: python -m minilm.grade

The test compares with torch.optim.lr_scheduler.CosineAnnealingLR and with values worked out by hand.
"""

from __future__ import annotations

import math  # noqa: F401  (math.cos, math.pi)


def get_lr(step: int, lr: float, min_lr: float, warmup_iters: int, max_iters: int) -> float:
    """Exercise training.py::get_lr (Eq. 6.6): the learning rate at optimizer step `step` (counted from 0).

    With W = warmup_iters and S = max_iters:
        lr_t = lr (t + 1) / W                                               for t < W   (linear warmup)
        lr_t = min_lr + 1/2 (lr - min_lr) (1 + cos(pi (t - W) / (S - W)))  for W <= t <= S   (cosine decay)
        lr_t = min_lr                                                       for t > S
    Return a Python float. Step 0 already gets lr / W (not 0, which would waste a step); step W - 1 reaches lr.
    Example: lr=1.0, min_lr=0.1, W=10, S=110: step 0 -> 0.1, step 9 -> 1.0, step 60 -> 0.55, step 500 -> 0.1.

    Hints: three cases, in that order; the cosine's argument goes from 0 (t = W) to pi (t = S).
    """
    raise NotImplementedError("exercise training.py::get_lr is not attempted yet")
