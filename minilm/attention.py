"""Scaled dot-product attention written out by hand, multi-head attention, and the KV cache.

This is the one operation that makes a Transformer a Transformer (Vaswani et al. 2017, "Attention Is All You Need",
https://arxiv.org/abs/1706.03762, sections 3.2.1-3.2.2). Every token builds a query, compares it with every key it
may see, and takes the softmax-weighted average of the values.

`scaled_dot_product_attention` takes the same arguments, with the same meaning, as PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention`, and the tests check that both give the same outputs and
gradients. The hand-written path is the one taught (and the default, `ModelConfig.attn_impl="manual"`); the fused
kernel is a config switch away.

Two options from Llama, chosen by ModelConfig (lectures/09_modern_blocks.ipynb, equations 9.5-9.9):
- rotary position embeddings (RoPE; Su et al. 2021, "RoFormer", https://arxiv.org/abs/2104.09864, section 3.4):
  `apply_rope` rotates q and k by an angle proportional to the position, so q . k depends only on how far apart
  the two tokens are, and no position table is needed;
- grouped-query attention (GQA; Ainslie et al. 2023, https://arxiv.org/abs/2305.13245, section 2): n_kv_heads < H
  key/value heads, each shared by H / n_kv_heads query heads (`repeat_kv`); n_kv_heads = 1 is multi-query attention
  (Shazeer 2019, https://arxiv.org/abs/1911.02150). The KV cache holds only the n_kv_heads heads.

Left out on purpose: flash-attention tiling, rope scaling (NTK, YaRN), sliding windows.
Read beside lectures/03_attention.ipynb (equations 3.1-3.7).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def causal_mask(T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """Boolean (T_q, T_k) mask, True where query i may attend to key j (Eq. 3.2).

    With a KV cache the T_q new queries are the *last* T_q of T_k positions, so query i sits at absolute position
    T_k - T_q + i and may see keys j <= T_k - T_q + i (bottom-right alignment). With T_q == T_k this is the usual
    lower-triangular mask.
    """
    T_k = T_q if T_k is None else T_k
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T_q)  # (T_q, T_k)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, D) -> (B, H, T, Dh): each head gets its own Dh = D / H slice of the features (Eq. 3.6)."""
    B, T, D = x.shape
    assert D % n_heads == 0, f"d_model {D} is not divisible by n_heads {n_heads}"
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, H, T, Dh)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, Dh) -> (B, T, D): concatenate the heads again (the Concat in Eq. 3.6)."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, H * Dh)  # (B, T, D)


def open_empty_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean mask (..., T_q, T_k) -> (the mask with key-less rows opened, those rows (..., T_q, 1)).

    A query row whose every key is masked would be softmax(-inf, ..., -inf) = 0/0 = NaN, and one NaN row poisons
    the whole batch's gradients. Opening the row keeps softmax finite; the caller zeroes the row's output after.
    """
    empty = ~mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
    return mask | empty, empty


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, return_weights=False):
    """softmax(Q K^T / sqrt(Dh) + M) V, by hand (Eqs. 3.1-3.4).

    q: (..., T_q, Dh), k: (..., T_k, Dh), v: (..., T_k, Dv). Arguments mean what they mean in
    `torch.nn.functional.scaled_dot_product_attention`:
      attn_mask: bool (True = may attend) or float (added to the scores), broadcastable to (..., T_q, T_k);
      is_causal: apply a lower-triangular mask aligned top-left (query i sees keys j <= i), as PyTorch does;
      dropout_p: dropout on the attention weights (pass 0.0 at evaluation time).
    Where PyTorch returns NaN, for a query row whose every key a boolean mask hides, we return zeros (and zero
    gradients), so left padding cannot poison a batch (`open_empty_rows`). A float mask is added as given.
    Returns the output (..., T_q, Dv), and the attention weights (..., T_q, T_k) when `return_weights` is True.
    """
    T_q, Dh = q.shape[-2], q.shape[-1]
    T_k = k.shape[-2]
    assert not (is_causal and attn_mask is not None), "pass attn_mask or is_causal=True, not both (as in PyTorch)"
    if is_causal:
        attn_mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()  # (T_q, T_k), top-left aligned
    empty_rows = None
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask, empty_rows = open_empty_rows(attn_mask)  # (..., T_q, T_k), (..., T_q, 1)

    scores = (q @ k.transpose(-2, -1)) / math.sqrt(Dh)  # Eq. 3.1: (..., T_q, T_k)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))  # Eq. 3.2: M_ij = -inf where j is hidden from i
        else:
            scores = scores + attn_mask  # Eq. 3.2 given directly as an additive float mask

    weights = torch.softmax(scores, dim=-1)  # Eq. 3.3: each row sums to 1, (..., T_q, T_k)
    if empty_rows is not None:
        weights = weights.masked_fill(empty_rows, 0.0)  # the opened rows attend to nothing
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)

    out = weights @ v  # Eq. 3.4: weighted average of the values, (..., T_q, Dv)
    return (out, weights) if return_weights else out


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(..., Dh) -> (..., Dh): [x1, x2] -> [-x2, x1], x1 and x2 the two halves of the features (Eq. 9.6)."""
    x1, x2 = x.chunk(2, dim=-1)  # 2 x (..., Dh / 2)
    return torch.cat([-x2, x1], dim=-1)  # (..., Dh)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Rotate the features of x by angles proportional to each token's position (Eqs. 9.5-9.6).

    x: (..., T, Dh), e.g. (B, H, T, Dh) queries or keys; positions: integer (T,) or (B, T), the absolute position
    of each of the T tokens. Feature pair i turns by the angle m * theta^(-2i / Dh) at position m (Eq. 9.5), so a
    query at m and a key at n meet at the angle (m - n) * theta_i: q . k depends on m - n only (Eq. 9.7).

    Convention: Llama's (and Hugging Face's) "rotate_half": pair i is (x_i, x_{i + Dh/2}), the first half of the
    features with the second. The RoFormer paper (Eq. 34) pairs neighbours, (x_{2i}, x_{2i+1}) ("interleaved", as
    Meta's original Llama code does with complex numbers). Both are the same rotation on a permuted feature order,
    so attention scores agree once W_q and W_k permute their output rows to match; Hugging Face's conversion script
    does that permutation, which is why its Llama weights load here without one.
    """
    Dh = x.shape[-1]
    assert Dh % 2 == 0, f"RoPE rotates pairs of features: the head dimension must be even, got {Dh}"
    dtype = torch.promote_types(x.dtype, torch.float32)  # angles in float32 (as Hugging Face), even under bf16
    inv_freq = 1.0 / theta ** (torch.arange(0, Dh, 2, device=x.device).to(dtype) / Dh)  # Eq. 9.5: (Dh/2,)
    angles = positions.to(x.device, dtype)[..., None] * inv_freq  # m theta_i: (T, Dh/2) or (B, T, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # each angle serves x_i and x_{i + Dh/2}: (..., T, Dh)
    cos, sin = angles.cos(), angles.sin()  # (T, Dh) or (B, T, Dh), float32
    if positions.dim() == 2:  # (B, T, Dh) -> (B, 1, .., T, Dh): broadcast over the heads between B and T
        cos = cos.view(cos.shape[0], *([1] * (x.dim() - 3)), *cos.shape[1:])
        sin = sin.view(cos.shape)
    xf = x.to(dtype)
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)  # Eq. 9.6: (..., T, Dh)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, T, Dh) -> (B, H_kv * n_rep, T, Dh): each key/value head serves n_rep query heads (Eq. 9.8).

    Query head h reads key/value head h // n_rep, the grouping of Hugging Face's `repeat_kv`. expand() is a view;
    the reshape copies, but only the small cache is stored: the expansion lives for one attention call.
    """
    B, H_kv, T, Dh = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None].expand(B, H_kv, n_rep, T, Dh).reshape(B, H_kv * n_rep, T, Dh)  # Eq. 9.8: (B, H, T, Dh)


def kv_cache_bytes(config: ModelConfig, seq_len: int, batch_size: int = 1, bytes_per_value: int = 2) -> int:
    """Memory of a full KV cache (Eq. 9.9): 2 (K and V) * n_layers * n_kv_heads * Dh * T * B * bytes per value.

    Multi-head attention has n_kv_heads = H; GQA divides the cache by H / n_kv_heads. bytes_per_value: 2 for
    bf16/fp16, 4 for float32.
    """
    return 2 * config.n_layers * config.n_kv_heads * config.d_head * seq_len * batch_size * bytes_per_value  # Eq. 9.9


class KVCache:
    """Keys and values of the tokens seen so far, for one layer (Eq. 3.7).

    When generating token t+1, the keys and values of tokens 1..t are the same as at the previous step (a causal
    model never lets an earlier token see a later one), so we keep them and compute only the new token's q, k, v.
    The buffers are allocated once, at the model's full context, on the first update. With grouped-query attention
    they hold the n_kv_heads key/value heads only (H_kv below), the saving of Eq. 9.9; with RoPE the keys are
    stored already rotated, at their absolute positions.
    """

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.k: torch.Tensor | None = None  # (B, H_kv, max_len, Dh)
        self.v: torch.Tensor | None = None  # (B, H_kv, max_len, Dh)
        self.length = 0  # number of positions filled

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append (B, H_kv, T, Dh) keys/values; return all keys/values so far, (B, H_kv, length, Dh)."""
        B, H, T, Dh = k.shape
        if self.k is None:
            self.k = k.new_zeros(B, H, self.max_len, Dh)
            self.v = v.new_zeros(B, H, self.max_len, v.shape[-1])
        end = self.length + T
        assert end <= self.max_len, f"KV cache holds {self.max_len} positions; cannot append {T} to {self.length}"
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, H_kv, length, Dh)


class MultiHeadAttention(nn.Module):
    """H attention heads in parallel, then an output projection (Eqs. 3.5-3.6).

    One Linear computes Q, K and V together (as GPT-2's `c_attn` does); the heads are views of its output.
    Causal when `config.causal` (GPT), bidirectional otherwise (BERT). Padding comes in as `attention_mask`
    (B, T_k) with 1 = token and 0 = pad: pad positions are never attended to.
    Set `record_weights = True` to keep the last attention weights in `self.attn_weights` (for plots).
    With ModelConfig.n_kv_heads < n_heads, W_K and W_V produce n_kv_heads heads only (GQA, Eq. 9.8); with
    pos_emb="rope", q and k are rotated by their positions (Eq. 9.6), counted on from what the KV cache holds.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.rope_theta = config.rope_theta if config.pos_emb == "rope" else None
        self.causal = config.causal
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        self.kv_dim = config.n_kv_heads * config.d_head  # = D without GQA
        self.qkv_proj = nn.Linear(config.d_model, config.d_model + 2 * self.kv_dim, bias=config.bias)  # W_Q | W_K | W_V
        self.out_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)  # W_O
        self.resid_dropout = nn.Dropout(config.dropout)
        self.record_weights = False
        self.attn_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv_proj(x).split([D, self.kv_dim, self.kv_dim], dim=2)  # Eq. 3.5: (B, T, D), 2 x (B, T, D_kv)
        q = split_heads(q, self.n_heads)  # (B, H, T, Dh)
        k = split_heads(k, self.n_kv_heads)  # (B, H_kv, T, Dh); H_kv = H without GQA
        v = split_heads(v, self.n_kv_heads)  # (B, H_kv, T, Dh)
        if self.rope_theta is not None:  # RoPE: rotate q and k at their absolute positions, after any cached ones
            past = kv_cache.length if kv_cache is not None else 0
            positions = torch.arange(past, past + T, device=x.device)  # (T,)
            q = apply_rope(q, positions, self.rope_theta)  # Eq. 9.6: (B, H, T, Dh)
            k = apply_rope(k, positions, self.rope_theta)  # Eq. 9.6: (B, H_kv, T, Dh)
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)  # Eq. 3.7: (B, H_kv, T_k, Dh), T_k = cached + T
        k = repeat_kv(k, self.n_heads // self.n_kv_heads)  # Eq. 9.8: (B, H, T_k, Dh)
        v = repeat_kv(v, self.n_heads // self.n_kv_heads)  # Eq. 9.8: (B, H, T_k, Dh)
        T_k = k.shape[2]

        # Build one boolean mask (True = may attend) from the causal rule and the padding; None when neither applies,
        # so the common training case (causal, no padding, no cache) can use is_causal and the fastest kernels.
        mask = None
        is_causal = self.causal and attention_mask is None and T_k == T
        if self.causal and not is_causal:
            mask = causal_mask(T, T_k, device=x.device)  # (T, T_k)
        if attention_mask is not None:
            assert attention_mask.shape == (B, T_k), f"attention_mask must be (B, T_k) = {(B, T_k)}"
            keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T_k)
            mask = keys if mask is None else mask & keys  # (B, 1, T, T_k)

        dropout_p = self.dropout if self.training else 0.0
        if self.attn_impl == "manual" or self.record_weights:
            y, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p,
                                                return_weights=True)  # (B, H, T, Dh), (B, H, T, T_k)
            if self.record_weights:
                self.attn_weights = w.detach()
        else:
            empty = None
            if mask is not None:  # the fused kernel returns NaN for rows with no visible key: open them, then zero
                mask, empty = open_empty_rows(mask)  # (B, 1, T, T_k) or (T, T_k); (B, 1, T, 1) or (T, 1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout_p)
            if empty is not None:
                y = y.masked_fill(empty, 0.0)  # (B, H, T, Dh)
        y = merge_heads(y)  # Eq. 3.6 (concat): (B, T, D)
        return self.resid_dropout(self.out_proj(y))  # Eq. 3.6 (W_O): (B, T, D)
