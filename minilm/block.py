"""LayerNorm, the GELU MLP, and the pre-norm Transformer block.

A block is attention (tokens talk to each other) followed by an MLP (each token thinks on its own), each wrapped in a
residual connection (He et al. 2016) with LayerNorm (Ba et al. 2016, https://arxiv.org/abs/1607.06450).

Deviation from the textbook: the original Transformer (Vaswani et al. 2017, section 3.1) is *post-norm*,
x = LN(x + Sublayer(x)) (Eq. 4.7). GPT-2 (Radford et al. 2019, section 2.3) and almost every model since put the norm
*before* each sublayer, x = x + Sublayer(LN(x)) (Eqs. 4.5-4.6), which keeps an identity path from input to output and
trains stably without warmup tricks (Xiong et al. 2020, https://arxiv.org/abs/2002.04745). This file implements
pre-norm by default; `ModelConfig(norm_position="post")` gives the post-norm block of the original Transformer and
BERT, so that BERT's weights load (minilm/pretrained.py). lectures/04_block.ipynb derives both and compares them.

Beside them, the two pieces of the Llama block that replace them (lectures/09_modern_blocks.ipynb), chosen by
ModelConfig.norm and ModelConfig.mlp: RMSNorm (Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467, section 3),
which drops LayerNorm's mean and shift, and SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer",
https://arxiv.org/abs/2002.05202, section 2), a gated MLP.

Left out on purpose: parallel attention/MLP blocks, the other GLU variants (GeGLU, ReGLU), QK-norm.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import KVCache, MultiHeadAttention
from .config import ModelConfig


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Normalise each feature vector to zero mean and unit variance, then scale and shift (Eq. 4.1)."""
    mu = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # (..., 1): the biased variance, as nn.LayerNorm uses
    y = (x - mu) / torch.sqrt(var + eps)  # Eq. 4.1
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class LayerNorm(nn.Module):
    """LayerNorm with learnable gain gamma and (optional) shift beta, written out (Eq. 4.1).

    fused=True computes the same Eq. 4.1 with PyTorch's one-kernel F.layer_norm (tested equal): five elementwise
    passes over the activations become one (ModelConfig.fused_kernels; measured in the README, section Measured).
    """

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True, fused: bool = False):
        super().__init__()
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(d))  # gamma
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None  # beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:  # autocast runs it in float32, like the manual path below
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        # Normalise in float32 even under bf16 autocast: the mean and variance of D numbers need the precision.
        return layer_norm(x.float(), self.weight, self.bias, self.eps).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Divide each feature vector by its root mean square, then scale (Eq. 9.1): no mean subtracted, no shift.

    x / sqrt(mean(x^2) + eps) * weight; the same as torch.nn.functional.rms_norm(x, (D,), weight, eps).
    """
    ms = (x * x).mean(dim=-1, keepdim=True)  # (..., 1): the mean square of the D features
    y = x * torch.rsqrt(ms + eps)  # Eq. 9.1: unit root mean square
    return y * weight if weight is not None else y


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain and no bias (Eq. 9.1; Zhang & Sennrich 2019, Llama).

    fused=True computes the same Eq. 9.1 with PyTorch's F.rms_norm (tested equal), as LayerNorm's fused path does.
    """

    def __init__(self, d: int, eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(d))  # gamma; there is no beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return F.rms_norm(x.float(), (x.shape[-1],), self.weight, self.eps).to(x.dtype)
        # In float32 under bf16 autocast, as LayerNorm does (and Hugging Face's LlamaRMSNorm).
        return rms_norm(x.float(), self.weight, self.eps).to(x.dtype)


def make_norm(config: ModelConfig) -> nn.Module:
    """The norm `config.norm` asks for, at width D: the one place that reads ModelConfig.norm."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps, config.fused_kernels)
    return LayerNorm(config.d_model, config.norm_eps, config.bias, config.fused_kernels)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU(x) = x Phi(x) (Hendrycks & Gimpel 2016, https://arxiv.org/abs/1606.08415).

    approximate="none": the exact form with the Gaussian CDF, x/2 (1 + erf(x / sqrt 2)) (Eq. 4.2; BERT).
    approximate="tanh": x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Eq. 4.3; GPT-2 uses this, so its
    weights reproduce exactly only with it).
    """
    if approximate == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))  # Eq. 4.3
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # Eq. 4.2
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def activation(config: ModelConfig):
    """The GELU that `config` asks for, as a function of x: the one place that reads ModelConfig.gelu.

    ModelConfig spells the choice "exact" / "tanh"; PyTorch's `approximate` argument spells it "none" / "tanh".
    fused_kernels picks PyTorch's one-kernel F.gelu for the same Eq. 4.2 / 4.3 (tested equal); the hand-written
    gelu() spends ~5 elementwise passes.
    """
    approximate = {"exact": "none", "tanh": "tanh"}[config.gelu]
    return partial(F.gelu if config.fused_kernels else gelu, approximate=approximate)


class MLP(nn.Module):
    """The position-wise feed-forward network: GELU(x W1 + b1) W2 + b2 (Eq. 4.4; Vaswani et al. section 3.3)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.act = activation(config)
        self.fc_in = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W1: D -> d_ff
        self.fc_out = nn.Linear(config.d_ff, config.d_model, bias=config.bias)  # W2: d_ff -> D
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc_in(x))  # Eq. 4.4 inner part: (B, T, d_ff)
        return self.dropout(self.fc_out(h))  # Eq. 4.4: (B, T, D)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU / Swish-1: x sigmoid(x) (Eq. 9.2; Ramachandran et al. 2017, Elfwing et al. 2018). Equals F.silu."""
    return x * torch.sigmoid(x)  # Eq. 9.2


class SwiGLU(nn.Module):
    """Llama's gated MLP: (SiLU(x W_gate) * (x W_in)) W_out (Eq. 9.3; Shazeer 2020, section 2).

    One branch decides, per hidden unit, how much of the other passes. Three matrices instead of the MLP's two, so
    the Llama rule shrinks d_ff to 2/3 of 4 D to keep the weights (Eq. 9.4, ModelConfig.d_ff).
    fused_kernels picks PyTorch's F.silu for the same Eq. 9.2 (tested equal).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.act = F.silu if config.fused_kernels else silu
        self.fc_gate = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W_gate: D -> d_ff
        self.fc_in = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # W_in ("up"): D -> d_ff
        self.fc_out = nn.Linear(config.d_ff, config.d_model, bias=config.bias)  # W_out ("down"): d_ff -> D
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc_gate(x)) * self.fc_in(x)  # Eq. 9.3 inner part: (B, T, d_ff)
        return self.dropout(self.fc_out(h))  # Eq. 9.3: (B, T, D)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + Attn(LN(x)), then x + MLP(LN(x)) (Eqs. 4.5-4.6); with
    `config.norm_position == "post"`, BERT's post-norm block: LN(x + Attn(x)), then LN(x + MLP(x)) (Eq. 4.7).
    ModelConfig.norm and .mlp swap in RMSNorm and SwiGLU (the Llama block); the wiring stays the same.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.post_norm = config.norm_position == "post"
        self.norm1 = make_norm(config)
        self.attn = MultiHeadAttention(config)
        self.norm2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        if self.post_norm:  # the original Transformer and BERT: the norm comes after each residual add
            x = self.norm1(x + self.attn(x, attention_mask, kv_cache))  # Eq. 4.7, attention sublayer: (B, T, D)
            return self.norm2(x + self.mlp(x))  # Eq. 4.7, MLP sublayer: (B, T, D)
        # Pre-norm (GPT-2), not the paper's post-norm LN(x + Sublayer(x)) of Eq. 4.7: see the module docstring.
        x = x + self.attn(self.norm1(x), attention_mask, kv_cache)  # Eq. 4.5: (B, T, D)
        x = x + self.mlp(self.norm2(x))  # Eq. 4.6: (B, T, D)
        return x
