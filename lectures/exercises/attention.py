"""Exercises for lectures/03_attention.ipynb: the causal mask, splitting into heads, scaled dot-product attention.

Write each body; keep every signature as it is (a test compares it with minilm/attention.py). Check your work:

    pytest tests/exercises/test_attention_exercises.py --impl=exercises     # or: python -m minilm.grade

The tests compare your code with PyTorch's own functions, so importing minilm's answer teaches you nothing and
writing it yourself is the point. Shapes: B batch, T sequence, D d_model, H heads, Dh = D / H.
"""

from __future__ import annotations

import math  # noqa: F401  (you will want math.sqrt)

import torch
import torch.nn.functional as F  # noqa: F401  (F.dropout)


def causal_mask(T_q: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """Exercise attention.py::causal_mask (Eq. 3.2): which keys each query may see in a causal (GPT) model.

    Return a bool tensor of shape (T_q, T_k), True where query i may attend to key j. T_k defaults to T_q.
    With T_q == T_k, query i sees keys 0..i (lower triangle, diagonal included). With a KV cache the T_q queries
    are the *last* T_q of the T_k positions, so query i sits at position T_k - T_q + i and sees keys j <= T_k - T_q + i.
    Example: causal_mask(2, 4) == [[True, True, True, False], [True, True, True, True]].

    Hints: torch.ones(..., dtype=torch.bool, device=device) then .tril(diagonal=...); what diagonal shifts the
    triangle right by T_k - T_q?
    """
    raise NotImplementedError("exercise attention.py::causal_mask is not attempted yet")


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Exercise attention.py::split_heads (Eq. 3.6): give each head its own slice of the features.

    x: (B, T, D) -> (B, H, T, Dh) with H = n_heads, Dh = D // H. Head h gets features h*Dh .. (h+1)*Dh - 1,
    so out[:, h] == x[:, :, h*Dh:(h+1)*Dh].

    Hints: unpack B, T, D = x.shape; .view(B, T, H, Dh) then .transpose(1, 2). Why not .view(B, H, T, Dh) directly?
    """
    raise NotImplementedError("exercise attention.py::split_heads is not attempted yet")


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Exercise attention.py::merge_heads (the Concat of Eq. 3.6): undo split_heads.

    x: (B, H, T, Dh) -> (B, T, H * Dh), the heads side by side along the last axis; merge_heads(split_heads(x, H))
    must give x back.

    Hints: .transpose(1, 2) first; .view needs contiguous memory (.contiguous() or .reshape).
    """
    raise NotImplementedError("exercise attention.py::merge_heads is not attempted yet")


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, dropout_p=0.0, return_weights=False):
    """Exercise attention.py::scaled_dot_product_attention (Eqs. 3.1-3.4): softmax(Q K^T / sqrt(Dh) + M) V by hand.

    q: (..., T_q, Dh), k: (..., T_k, Dh), v: (..., T_k, Dv). The arguments mean what they mean in
    torch.nn.functional.scaled_dot_product_attention (the tests compare with it):
      attn_mask: None, a bool mask (True = may attend) or a float mask added to the scores; it broadcasts to
                 (..., T_q, T_k);
      is_causal: query i sees keys j <= i (a lower triangle aligned top-left); never passed with attn_mask;
      dropout_p: dropout probability on the attention weights (0.0 = none);
      return_weights: also return the weights (..., T_q, T_k).
    Returns out (..., T_q, Dv), or (out, weights). One rule PyTorch does not have: a query row whose every key is
    masked gets zeros (PyTorch returns NaN there), so padding cannot poison a batch.

    Steps: scores = q @ k^T / sqrt(Dh) (Eq. 3.1); masked scores -> -inf (Eq. 3.2); softmax over the keys (Eq. 3.3);
    weights @ v (Eq. 3.4).
    Hints: k.transpose(-2, -1); scores.masked_fill(~mask, float("-inf")); torch.softmax(scores, dim=-1);
    torch.isneginf(scores).all(dim=-1, keepdim=True) finds the rows with nothing to see: fill them with 0 before
    the softmax and zero their weights after it.
    """
    raise NotImplementedError("exercise attention.py::scaled_dot_product_attention is not attempted yet")


# ---- lectures/09_modern_blocks.ipynb: rotary positions and grouped-query attention -------------------------------
def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Exercise attention.py::apply_rope (Eqs. 9.5-9.6): rotate queries or keys by their positions (RoPE).

    x: (..., T, Dh) with Dh even, e.g. (B, H, T, Dh); positions: integer (T,) or (B, T). Llama's "rotate_half"
    convention: feature i is paired with feature i + Dh/2, and pair i turns by the angle m * theta_i at position m,
    theta_i = theta^(-2i / Dh) for i = 0 .. Dh/2 - 1 (Eq. 9.5). With c = cos and s = sin of [angles, angles] (the
    Dh/2 angles written twice, shape (..., T, Dh)) and rotate_half([x1, x2]) = [-x2, x1]:
        RoPE(x) = x * c + rotate_half(x) * s     (Eq. 9.6)
    Compute the angles in float32 and return x's dtype. The test compares with Hugging Face's apply_rotary_pos_emb.

    Hints: torch.arange(0, Dh, 2).float() / Dh; positions.float()[..., None] * inv_freq; for (B, T) positions and
    (B, H, T, Dh) x, cos has shape (B, T, Dh): insert the head axis with cos[:, None].
    """
    raise NotImplementedError("exercise attention.py::apply_rope is not attempted yet")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Exercise attention.py::repeat_kv (Eq. 9.8): grouped-query attention's key/value expansion.

    x: (B, H_kv, T, Dh) keys or values -> (B, H_kv * n_rep, T, Dh), where query head h reads key/value head
    h // n_rep: kv head 0 serves query heads 0 .. n_rep - 1, kv head 1 the next n_rep, and so on.
    The test compares with Hugging Face's repeat_kv and with F.scaled_dot_product_attention(enable_gqa=True).

    Hints: x[:, :, None] adds an axis of size 1 after H_kv; .expand(B, H_kv, n_rep, T, Dh) then .reshape(...);
    torch.repeat_interleave(x, n_rep, dim=1) is the one-line answer. (x.repeat(1, n_rep, 1, 1) groups wrongly: why?)
    """
    raise NotImplementedError("exercise attention.py::repeat_kv is not attempted yet")
