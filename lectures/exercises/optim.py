"""Exercise for lectures/09_modern_blocks.ipynb (the update derived in lectures/06_training.ipynb): one AdamW step.

Write the body; keep the signature as it is (a test compares it with minilm/optim.py). Check your work:

    pytest tests/exercises/test_modern_exercises.py -k adamw --impl=exercises     # or: python -m minilm.grade

The test runs your step and torch.optim.AdamW side by side on the same gradients for several steps.
"""

from __future__ import annotations

import math  # noqa: F401  (math.sqrt)

import torch


@torch.no_grad()
def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
               lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """Exercise optim.py::adamw_step (Eqs. 6.2-6.5): update param, exp_avg (m) and exp_avg_sq (v) in place.

    step = t counts this update, starting at 1. In this order:
        param <- param * (1 - lr * weight_decay)                 decoupled weight decay (Eq. 6.5)
        m <- beta1 m + (1 - beta1) g                             (Eq. 6.2)
        v <- beta2 v + (1 - beta2) g^2                           (Eq. 6.3)
        m^ = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)          bias correction (Eq. 6.4)
        param <- param - lr * m^ / (sqrt(v^) + eps)              (Eq. 6.5)
    Return nothing: the caller keeps m and v between steps.

    Hints: in-place tensor methods end in an underscore (mul_, add_, addcmul_, addcdiv_); rebinding a name
    (m = ...) does not change the caller's tensor, m.mul_(beta1).add_(...) or m.copy_(...) does.
    """
    raise NotImplementedError("exercise optim.py::adamw_step is not attempted yet")
