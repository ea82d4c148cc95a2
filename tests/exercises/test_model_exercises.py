"""Exercise model.py::next_token_loss (lectures/05_model.ipynb), checked against F.cross_entropy and ln V."""

import math

import pytest
import torch
import torch.nn.functional as F
from exercise_checks import close

exercise = pytest.mark.exercise


@exercise("model.py::next_token_loss")
def test_next_token_loss_matches_cross_entropy(solution):
    logits = torch.randn(2, 5, 11)  # (B, T, V)
    targets = torch.randint(0, 11, (2, 5))  # (B, T)
    expected = F.cross_entropy(logits.reshape(10, 11), targets.reshape(10))
    close(solution(logits, targets), expected, "next_token_loss on random logits",
          "Eq. 2.2: the mean over all positions of -log softmax(logits)[target]; return a scalar (shape ())")


@exercise("model.py::next_token_loss")
def test_next_token_loss_skips_ignored_targets(solution):
    logits = torch.randn(2, 6, 7)
    targets = torch.randint(0, 7, (2, 6))
    targets[0, 4:] = -100  # padding at the end of the first row
    targets[1, 0] = -100
    expected = F.cross_entropy(logits.reshape(12, 7), targets.reshape(12), ignore_index=-100)
    close(solution(logits, targets), expected, "next_token_loss with IGNORE_INDEX (-100) at 3 of 12 positions",
          "positions whose target is -100 count neither in the sum nor in the number you divide by (9, not 12)")


@exercise("model.py::next_token_loss")
def test_next_token_loss_of_a_uniform_guess_is_log_vocab_size(solution):
    V = 50
    got = solution(torch.zeros(3, 4, V), torch.randint(0, V, (3, 4)))
    close(got, torch.tensor(math.log(V)), "next_token_loss of all-zero logits (every token has probability 1/V)",
          "-log(1/V) = ln V = 3.912 for V = 50")


@exercise("model.py::next_token_loss")
def test_next_token_loss_is_float32_for_bfloat16_logits(solution):
    logits = torch.randn(2, 4, 9).bfloat16()
    targets = torch.randint(0, 9, (2, 4))
    expected = F.cross_entropy(logits.float().reshape(8, 9), targets.reshape(8))
    close(solution(logits, targets), expected, "next_token_loss on bfloat16 logits",
          "upcast with .float() first: a log-softmax over V numbers in bfloat16 (8 bits of mantissa) loses the loss")
