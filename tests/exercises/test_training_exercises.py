"""Exercise training.py::get_lr (lectures/06_training.ipynb), checked against CosineAnnealingLR and worked values."""

import pytest
import torch

exercise = pytest.mark.exercise
LR, MIN_LR, W, S = 1.0, 0.1, 10, 110


@exercise("training.py::get_lr")
def test_get_lr_worked_values(solution):
    for step, expected in [(0, 0.1), (4, 0.5), (9, 1.0), (10, 1.0), (60, 0.55), (110, 0.1), (500, 0.1)]:
        got = solution(step, LR, MIN_LR, W, S)
        assert isinstance(got, float), f"get_lr must return a Python float, got {type(got).__name__}"
        assert got == pytest.approx(expected, abs=1e-9), (
            f"get_lr({step}, lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110): expected {expected}, got {got}. "
            "Warmup: lr (t + 1) / W; cosine from W to S; min_lr after S (Eq. 6.6)")


@exercise("training.py::get_lr")
def test_get_lr_cosine_part_matches_pytorch_scheduler(solution):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=S - W, eta_min=MIN_LR)
    for e in range(S - W + 1):
        expected = opt.param_groups[0]["lr"]
        got = solution(W + e, LR, MIN_LR, W, S)
        assert got == pytest.approx(expected, abs=1e-9), (
            f"step {W + e}: CosineAnnealingLR(T_max={S - W}, eta_min={MIN_LR}) gives {expected:.6f}, you give {got:.6f}. "
            "The cosine starts at step W (argument 0) and ends at step S (argument pi)")
        opt.step()
        sched.step()


@exercise("training.py::get_lr")
def test_get_lr_warmup_is_linear_and_peaks_at_lr(solution):
    lrs = [solution(t, 3e-4, 3e-5, 100, 1000) for t in range(100)]
    steps = [b - a for a, b in zip(lrs, lrs[1:])]
    assert lrs[0] > 0, "step 0 must already get a non-zero rate (lr / W), or the first step is wasted"
    assert max(steps) - min(steps) < 1e-12, "the warmup must rise by the same amount every step (linear)"
    assert lrs[-1] == pytest.approx(3e-4), f"step W - 1 must reach the peak lr 3e-4, got {lrs[-1]}"
