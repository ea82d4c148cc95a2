"""Exercises of lectures/05_model.ipynb: top-k and top-p filtering, checked against torch.topk and worked examples."""

import pytest
import torch
from exercise_checks import close

exercise = pytest.mark.exercise
INF = float("inf")


@exercise("sampling.py::top_k_filter")
def test_top_k_keeps_the_k_largest(solution):
    logits = torch.tensor([[1.0, 3.0, 2.0, 5.0], [0.0, -1.0, 4.0, 2.0]])
    before = logits.clone()
    expected = torch.tensor([[-INF, 3.0, -INF, 5.0], [-INF, -INF, 4.0, 2.0]])
    close(solution(logits, 2), expected, "top_k_filter(logits, 2)", "Eq. 5.8: keep the 2 largest per row, -inf elsewhere")
    assert torch.equal(logits, before), "top_k_filter changed its input: use masked_fill (new tensor), not masked_fill_"


@exercise("sampling.py::top_k_filter")
def test_top_k_matches_torch_topk_on_random_rows(solution):
    logits = torch.randn(4, 50)
    kth = torch.topk(logits, 7, dim=-1).values[:, -1:]  # (B, 1)
    expected = torch.where(logits >= kth, logits, torch.full_like(logits, -INF))
    close(solution(logits, 7), expected, "top_k_filter(randn(4, 50), 7)", "each row keeps its own 7 largest")


@exercise("sampling.py::top_k_filter")
def test_top_k_edge_cases(solution):
    logits = torch.tensor([[2.0, 2.0, 1.0, 0.0]])
    close(solution(logits, 1), torch.tensor([[2.0, 2.0, -INF, -INF]]), "top_k_filter with a tie at the k-th value",
          "keep every logit >= the k-th largest, so ties are kept")
    close(solution(logits, 10), logits, "top_k_filter with k > V", "k larger than the vocabulary keeps everything")
    with pytest.raises(ValueError):
        solution(logits, 0)


def _logits_of(probs):
    return torch.tensor(probs).log()


@exercise("sampling.py::top_p_filter")
def test_top_p_keeps_the_nucleus(solution):
    logits = _logits_of([[0.15, 0.5, 0.05, 0.3], [0.4, 0.1, 0.2, 0.3]])
    before = logits.clone()
    got = solution(logits, 0.75)
    expected = logits.clone()
    expected[0, [0, 2]] = -INF  # 0.5 + 0.3 reaches 0.75
    expected[1, [1]] = -INF  # 0.4 + 0.3 = 0.7 does not, 0.4 + 0.3 + 0.2 does
    close(got, expected, "top_p_filter(logits, 0.75)",
          "Eq. 5.9: sorted by probability, keep a token while the mass *before* it is < p")
    assert torch.equal(logits, before), "top_p_filter changed its input"


@exercise("sampling.py::top_p_filter")
def test_top_p_extremes(solution):
    logits = _logits_of([[0.1, 0.6, 0.3]])
    close(solution(logits, 0.01), torch.tensor([[-INF, logits[0, 1].item(), -INF]]), "top_p_filter with tiny p",
          "the most likely token is always kept (the mass before it is 0 < p)")
    close(solution(logits, 1.0), logits, "top_p_filter with p = 1.0", "p = 1 keeps every token")
    with pytest.raises(ValueError):
        solution(logits, 1.5)
