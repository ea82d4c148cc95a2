"""Exercises of lectures/10_rnn_vs_attention.ipynb: one LSTM step and one GRU step, checked against nn.LSTMCell and
nn.GRUCell with the same weights, and against a hand-computed case."""

import math

import pytest
import torch
import torch.nn as nn
from exercise_checks import close

exercise = pytest.mark.exercise


def _random_cell(cell: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every weight afresh, so a gate read from the wrong rows cannot pass by luck
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return cell


@exercise("rnn.py::lstm_cell")
def test_lstm_cell_matches_nn_lstmcell(solution):
    torch.manual_seed(0)
    cell = _random_cell(nn.LSTMCell(5, 4), seed=1)
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    with torch.no_grad():
        h_ref, c_ref = cell(x, (h, c))
        got = solution(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert isinstance(got, tuple) and len(got) == 2, "return the pair (h_t, c_t)"
    close(got[1], c_ref, "c_t of lstm_cell vs nn.LSTMCell",
          "Eq. 10.4: c_t = f * c + i * g, with the gates in PyTorch's row order i, f, g, o")
    close(got[0], h_ref, "h_t of lstm_cell vs nn.LSTMCell", "Eq. 10.5: h_t = o * tanh(c_t)")


@exercise("rnn.py::lstm_cell")
def test_lstm_cell_without_bias_and_with_gradients(solution):
    torch.manual_seed(1)
    cell = _random_cell(nn.LSTMCell(3, 2, bias=False), seed=2)
    x, h, c = torch.randn(2, 3), torch.randn(2, 2), torch.randn(2, 2)
    h_ref, c_ref = cell(x, (h, c))
    got_h, got_c = solution(x, h, c, cell.weight_ih, cell.weight_hh, None, None)
    close(got_h, h_ref.detach(), "h_t of lstm_cell with bias=None", "F.linear(x, W, None) adds no bias")
    g_ref = torch.autograd.grad((h_ref + c_ref).sum(), cell.weight_hh)[0]
    g = torch.autograd.grad((got_h + got_c).sum(), cell.weight_hh)[0]
    close(g, g_ref, "gradient of h_t + c_t with respect to weight_hh",
          "build the step from differentiable torch operations only (no .item(), no numpy)")


@exercise("rnn.py::lstm_cell")
def test_lstm_cell_by_hand(solution):
    # all weights 0, biases 0: every gate is sigmoid(0) = 1/2 and g = tanh(0) = 0, so c_t = c / 2, h_t = tanh(c_t) / 2
    H = 2
    c = torch.tensor([[2.0, -4.0]])
    zeros = torch.zeros(4 * H, 1), torch.zeros(4 * H, H)
    h_t, c_t = solution(torch.ones(1, 1), torch.ones(1, H), c, *zeros)
    close(c_t, torch.tensor([[1.0, -2.0]]), "c_t with zero weights", "f = sigmoid(0) = 0.5 halves the cell; g = 0")
    close(h_t, torch.tensor([[0.5 * math.tanh(1.0), 0.5 * math.tanh(-2.0)]]), "h_t with zero weights",
          "o = 0.5, so h_t = 0.5 * tanh(c_t)")


@exercise("rnn.py::gru_cell")
def test_gru_cell_matches_nn_grucell(solution):
    torch.manual_seed(2)
    cell = _random_cell(nn.GRUCell(5, 4), seed=3)
    x, h = torch.randn(3, 5), torch.randn(3, 4)
    with torch.no_grad():
        got = solution(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        close(got, cell(x, h), "gru_cell vs nn.GRUCell",
              "Eq. 10.7: n = tanh(x_n + r * h_n), where h_n = h W_hn^T + b_hn includes its bias; Eq. 10.8: "
              "h_t = (1 - z) * n + z * h")


@exercise("rnn.py::gru_cell")
def test_gru_cell_without_bias_and_with_gradients(solution):
    torch.manual_seed(3)
    cell = _random_cell(nn.GRUCell(3, 2, bias=False), seed=4)
    x, h = torch.randn(2, 3), torch.randn(2, 2, requires_grad=True)
    ref = cell(x, h)
    got = solution(x, h, cell.weight_ih, cell.weight_hh, None, None)
    close(got, ref.detach(), "gru_cell with bias=None")
    close(torch.autograd.grad(got.sum(), h)[0], torch.autograd.grad(ref.sum(), h)[0],
          "gradient of h_t with respect to h_{t-1}", "use only differentiable torch operations")


@exercise("rnn.py::gru_cell")
def test_gru_cell_by_hand(solution):
    # zero weights: r = z = 1/2, n = tanh(0) = 0, so h_t = (1 - 1/2) * 0 + 1/2 * h = h / 2
    H = 3
    h = torch.tensor([[2.0, -1.0, 0.5]])
    got = solution(torch.ones(1, 2), h, torch.zeros(3 * H, 2), torch.zeros(3 * H, H))
    close(got, h / 2, "gru_cell with zero weights", "z = 0.5 keeps half of h_{t-1}; the candidate n is 0")
