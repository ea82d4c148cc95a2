"""Exercises for lectures/04_block.ipynb: LayerNorm, GELU, the MLP, and the pre-norm Transformer block.

Write each body; keep every signature as it is (a test compares it with minilm/block.py). For the two classes the
constructor is given (the tests copy weights by these attribute names): you write `forward`. Check your work:

    pytest tests/exercises/test_block_exercises.py --impl=exercises     # or: python -m minilm.grade

The tests compare with nn.LayerNorm, F.gelu and nn.TransformerEncoderLayer. Shapes: B batch, T sequence, D d_model.
"""

from __future__ import annotations

import math  # noqa: F401  (math.sqrt, math.pi for the tanh GELU)

import torch
import torch.nn as nn

# The block's sublayers come from minilm, so the block exercise grades only your residual wiring, not your other
# answers; your MLP below is graded on its own.
from minilm.attention import KVCache, MultiHeadAttention
from minilm.block import MLP as _GivenMLP
from minilm.block import LayerNorm as _GivenLayerNorm
from minilm.config import ModelConfig


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Exercise block.py::layer_norm (Eq. 4.1): y = (x - mean) / sqrt(var + eps) * weight + bias.

    Mean and variance are over the last axis (the D features of each token); var is the *biased* variance (divide by
    D, not D - 1), as nn.LayerNorm uses. weight (gamma) and bias (beta) have shape (D,) and may each be None (skip
    that step). x: (..., D) -> (..., D).

    Hints: x.mean(dim=-1, keepdim=True); ((x - mu) ** 2).mean(...) or x.var(dim=-1, unbiased=False, keepdim=True).
    """
    raise NotImplementedError("exercise block.py::layer_norm is not attempted yet")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Exercise block.py::gelu (Eqs. 4.2-4.3): GELU(x) = x Phi(x), Phi the standard normal CDF.

    approximate="none": 0.5 x (1 + erf(x / sqrt(2)))                              (Eq. 4.2, BERT)
    approximate="tanh": 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))        (Eq. 4.3, GPT-2)
    anything else: raise ValueError naming the two allowed values.

    Hints: torch.erf, torch.tanh. Do not call F.gelu: the test compares you with it.
    """
    raise NotImplementedError("exercise block.py::gelu is not attempted yet")


class MLP(nn.Module):
    """Exercise block.py::MLP (Eq. 4.4): the position-wise feed-forward network, dropout(GELU(x W1 + b1) W2 + b2).

    The constructor is given; write `forward`: x (B, T, D) -> fc_in -> GELU (exact or tanh, as
    `self.approximate` says) -> fc_out -> dropout -> (B, T, D).
    Hint: the hidden layer h is (B, T, d_ff), four times wider than D by default.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.approximate = "tanh" if config.gelu == "tanh" else "none"
        self.fc_in = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W1: D -> d_ff
        self.fc_out = nn.Linear(config.d_ff, config.d_model, bias=config.bias)  # W2: d_ff -> D
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("exercise block.py::MLP is not attempted yet (write MLP.forward)")


class TransformerBlock(nn.Module):
    """Exercise block.py::TransformerBlock (Eqs. 4.5-4.6): the pre-norm residual block of GPT-2.

    The constructor is given; write `forward`:
        x = x + Attn(LN1(x))     (Eq. 4.5; pass attention_mask and kv_cache on to self.attn)
        x = x + MLP(LN2(x))      (Eq. 4.6)
    x: (B, T, D) -> (B, T, D). Careful: this is *pre*-norm; the 2017 paper's post-norm LN(x + Sublayer(x)) (Eq. 4.7)
    gives different numbers, and the test (nn.TransformerEncoderLayer with norm_first=True) will tell.
    Hint: two lines; each sublayer reads the *normalised* x but adds its output to the *un-normalised* x.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = _GivenLayerNorm(config.d_model, config.norm_eps, config.bias)
        self.attn = MultiHeadAttention(config)  # call as self.attn(h, attention_mask, kv_cache)
        self.norm2 = _GivenLayerNorm(config.d_model, config.norm_eps, config.bias)
        self.mlp = _GivenMLP(config)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        raise NotImplementedError("exercise block.py::TransformerBlock is not attempted yet (write forward)")


# ---- lectures/09_modern_blocks.ipynb: the Llama block's two replacements ------------------------------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Exercise block.py::rms_norm (Eq. 9.1): y = x / sqrt(mean(x^2) + eps) * weight.

    LayerNorm without the mean: divide each feature vector by its root mean square over the last axis (the D
    features), then scale by weight (shape (D,), may be None: skip it). No bias. x: (..., D) -> (..., D).
    The test compares with torch.nn.functional.rms_norm.

    Hints: (x * x).mean(dim=-1, keepdim=True); torch.rsqrt(a) is 1 / sqrt(a); eps goes inside the square root.
    """
    raise NotImplementedError("exercise block.py::rms_norm is not attempted yet")


class SwiGLU(nn.Module):
    """Exercise block.py::SwiGLU (Eqs. 9.2-9.3): Llama's gated MLP, dropout((SiLU(x W_gate) * (x W_in)) W_out).

    The constructor is given; write `forward`: x (B, T, D) -> fc_gate and fc_in (each (B, T, d_ff)) -> SiLU of the
    gate times the other, elementwise -> fc_out -> dropout -> (B, T, D). SiLU(z) = z * sigmoid(z) (Eq. 9.2).
    The test compares with the formula written with F.silu.
    Hint: which of the two branches goes through the SiLU matters: the gate, fc_gate.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc_gate = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W_gate: D -> d_ff
        self.fc_in = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W_in ("up"): D -> d_ff
        self.fc_out = nn.Linear(config.d_ff, config.d_model, bias=config.bias)  # W_out ("down"): d_ff -> D
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("exercise block.py::SwiGLU is not attempted yet (write SwiGLU.forward)")
