"""Temperature, top-k and top-p on crafted distributions."""

import math

import pytest
import torch

from minilm.sampling import sample_next, top_k_filter, top_p_filter


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_keeps_the_nucleus():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
    logits = probs.log()
    # cumulative mass before each token: 0, .5, .75, .90, .97 -> p = 0.8 keeps the first three tokens
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [[True, True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[True, False, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


def test_top_p_never_samples_outside_the_nucleus():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.04, 0.4, 0.02, 0.3, 0.2, 0.04])  # nucleus for p=0.85: ids 1, 3, 4 (0.4+0.3+0.2 = 0.9)
    logits = probs.log().repeat(4000, 1)  # (4000, 6)
    draws = sample_next(logits, 1.0, top_p=0.85, generator=g)[:, 0]
    assert set(draws.tolist()) == {1, 3, 4}
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    torch.testing.assert_close(freq[[1, 3, 4]], torch.tensor([0.4, 0.3, 0.2]) / 0.9, atol=0.03, rtol=0)


def test_temperature_reshapes_the_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.0, math.log(3.0)]).repeat(20000, 1)  # p = (0.25, 0.75)
    hot = sample_next(logits, 1.0, generator=g).float().mean().item()
    cold = sample_next(logits, 0.5, generator=g).float().mean().item()  # p ∝ (1, 9): 0.9
    assert hot == pytest.approx(0.75, abs=0.015) and cold == pytest.approx(0.9, abs=0.015)


def test_temperature_zero_is_argmax_and_bad_values_raise():
    logits = torch.tensor([[0.1, 2.0, 0.3]])
    assert sample_next(logits, 0.0).item() == 1
    with pytest.raises(ValueError):
        sample_next(logits, -1.0)
    with pytest.raises(ValueError):
        top_p_filter(logits, 0.0)
    with pytest.raises(ValueError):
        top_k_filter(logits, 0)
