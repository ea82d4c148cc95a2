"""Exercise data.py::mask_tokens (lectures/02_data.ipynb): BERT's 80/10/10 masking, checked by its rates and rules.

The exercise may draw its random numbers in any order, so these tests check what must hold for any correct answer
on a 32768-token batch (rates within about 5 standard deviations), not exact ids.
"""

import pytest
import torch

exercise = pytest.mark.exercise

V, MASK, PAD, CLS = 1000, 3, 0, 1  # a vocabulary whose first ids are special
SPECIAL = [PAD, CLS, 2]  # 2 plays sep


def _batch():
    idx = torch.randint(4, V, (128, 256), generator=torch.Generator().manual_seed(0))  # (B, T): ordinary ids
    idx[:, 0] = CLS
    attention_mask = torch.ones_like(idx)
    idx[:64, 200:] = PAD  # half the rows padded at the end ...
    attention_mask[:64, 200:] = 0
    attention_mask[64:, 250:] = 0  # ... and a few positions switched off without a pad id
    return idx, attention_mask


def _run(solution, seed=0, **kwargs):
    idx, attention_mask = _batch()
    g = torch.Generator().manual_seed(seed)
    result = solution(idx.clone(), MASK, V, SPECIAL, g, attention_mask=attention_mask, **kwargs)
    assert isinstance(result, tuple) and len(result) == 2, "mask_tokens returns a pair (inputs, targets)"
    inputs, targets = result
    for name, t in (("inputs", inputs), ("targets", targets)):
        assert isinstance(t, torch.Tensor) and t.shape == idx.shape and t.dtype == torch.long, (
            f"{name}: expected an int64 tensor of shape {tuple(idx.shape)}, got "
            f"{(t.dtype, tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__}")
    return idx, attention_mask, inputs, targets


@exercise("data.py::mask_tokens")
def test_mask_tokens_selects_about_mask_prob_of_the_eligible_positions(solution):
    idx, attention_mask, inputs, targets = _run(solution)
    selected = targets != -100
    eligible = (attention_mask == 1) & ~torch.isin(idx, torch.tensor(SPECIAL + [MASK]))
    assert not (selected & ~eligible).any(), (
        f"{int((selected & ~eligible).sum())} selected positions hold a special id or have attention_mask 0: "
        "those must never be selected (they have no word to predict)")
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.015, f"expected about 15% of the eligible positions selected, got {rate:.1%}"
    assert torch.equal(targets[selected], idx[selected]), "targets must hold the original id at every selected position"


@exercise("data.py::mask_tokens")
def test_mask_tokens_corrupts_80_10_10(solution):
    idx, _, inputs, targets = _run(solution, mask_prob=0.5)
    selected = targets != -100
    n = selected.sum().item()
    masked = (inputs[selected] == MASK).sum().item() / n
    kept = (inputs[selected] == idx[selected]).sum().item() / n
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.03 and abs(kept - 0.1) < 0.02 and abs(replaced - 0.1) < 0.02, (
        f"of the selected positions, expected 80% <mask>, 10% random id, 10% unchanged; got {masked:.1%}, "
        f"{replaced:.1%}, {kept:.1%}. One uniform draw r per position: r < 0.8 mask, 0.8 <= r < 0.9 random, else keep")
    assert torch.equal(inputs[~selected], idx[~selected]), "positions that are not selected must stay unchanged"


@exercise("data.py::mask_tokens")
def test_mask_tokens_random_replacements_are_ordinary_ids(solution):
    idx, _, inputs, targets = _run(solution, mask_prob=0.5)
    changed = (targets != -100) & (inputs != MASK) & (inputs != idx)
    random_ids = inputs[changed]
    assert ((random_ids >= 0) & (random_ids < V)).all(), f"random ids must lie in [0, {V}), got {random_ids.min()}.."
    assert not torch.isin(random_ids, torch.tensor(SPECIAL + [MASK])).any(), (
        "a random replacement must never be a special id (pad, cls, sep, mask): draw from the ordinary ids only")
    assert random_ids.unique().numel() > 100, "random replacements should be spread over the whole vocabulary"


@exercise("data.py::mask_tokens")
def test_mask_tokens_takes_its_randomness_from_the_generator(solution):
    _, _, inputs_a, targets_a = _run(solution, seed=7)
    torch.manual_seed(123)  # the global seed must not matter
    _, _, inputs_b, targets_b = _run(solution, seed=7)
    assert torch.equal(inputs_a, inputs_b) and torch.equal(targets_a, targets_b), (
        "the same generator seed must give the same batch: pass generator=generator to every torch.rand/randint")
    _, _, inputs_c, _ = _run(solution, seed=8)
    assert not torch.equal(inputs_a, inputs_c), "a different seed should give a different batch"
