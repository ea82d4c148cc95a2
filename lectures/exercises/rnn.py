"""Exercises for lectures/10_rnn_vs_attention.ipynb: one time step of an LSTM and of a GRU.

Write each body; keep every signature as it is (a test compares it with minilm/rnn.py). Check your work:

    pytest tests/exercises/test_rnn_exercises.py --impl=exercises     # or: python -m minilm.grade

The weights are laid out as PyTorch's nn.LSTMCell / nn.GRUCell hold them (the tests compare with those): the rows of
weight_ih (G H, I), weight_hh (G H, H) and the two biases (G H,) stack the gates, G = 4 for the LSTM in the order
i, f, g, o and G = 3 for the GRU in the order r, z, n. Shapes: B batch, I input width, H hidden width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (F.linear)


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
              bias_ih: torch.Tensor | None = None, bias_hh: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise rnn.py::lstm_cell (Eqs. 10.3-10.5): one LSTM step, returning (h_t, c_t), each (B, H).

    x: (B, I), the input at step t; h, c: (B, H), the hidden and cell state after step t-1. The biases may be None
    (no bias). Compute the four pre-activations together, x W_ih^T + b_ih + h W_hh^T + b_hh, (B, 4H); split them
    into i, f, g, o; squash i, f, o with the sigmoid and g with tanh (Eq. 10.3); then c_t = f * c + i * g (Eq. 10.4)
    and h_t = o * tanh(c_t) (Eq. 10.5).

    Hints: F.linear(x, weight, bias) computes x weight^T + bias and accepts bias=None; tensor.chunk(4, dim=-1)
    splits the last axis into four equal parts.
    """
    raise NotImplementedError("exercise rnn.py::lstm_cell is not attempted yet")


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor | None = None, bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """Exercise rnn.py::gru_cell (Eqs. 10.6-10.8): one GRU step, returning h_t (B, H).

    x: (B, I); h: (B, H). Split x W_ih^T + b_ih and h W_hh^T + b_hh into their r, z, n thirds (keep the two apart:
    the reset gate multiplies only the hidden part of n). r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z) (Eq. 10.6);
    n = tanh(x_n + r * h_n) (Eq. 10.7, PyTorch's form: r multiplies h W_hn^T + b_hn, not h itself as in Cho et al.);
    h_t = (1 - z) * n + z * h (Eq. 10.8).

    Hints: two F.linear calls, then .chunk(3, dim=-1) on each. Watch which side z weights: z near 1 keeps h.
    """
    raise NotImplementedError("exercise rnn.py::gru_cell is not attempted yet")
