"""Exercises of lectures/03_attention.ipynb, checked against F.scaled_dot_product_attention and known values."""

import math

import pytest
import torch
import torch.nn.functional as F
from exercise_checks import close, same

exercise = pytest.mark.exercise


# ---------------------------------------------------------------------------------------------------- causal_mask
@exercise("attention.py::causal_mask")
def test_causal_mask_square_is_the_lower_triangle(solution):
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    same(solution(4), expected, "causal_mask(4)", "query i may see keys 0..i: True on and below the diagonal")


@exercise("attention.py::causal_mask")
def test_causal_mask_with_a_cache_aligns_bottom_right(solution):
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    same(solution(2, 4), expected, "causal_mask(2, 4)",
         "the 2 queries are positions 2 and 3 of 4: query 0 sees keys 0..2, query 1 sees all")
    same(solution(1, 5), torch.ones(1, 5, dtype=torch.bool), "causal_mask(1, 5)", "the newest token sees every key")


@exercise("attention.py::causal_mask")
def test_causal_mask_gives_pytorch_causal_attention(solution):
    q, k, v = torch.randn(3, 2, 3, 6, 8).unbind(0)  # (B, H, T, Dh) each
    close(F.scaled_dot_product_attention(q, k, v, attn_mask=solution(6)),
          F.scaled_dot_product_attention(q, k, v, is_causal=True),
          "attention with attn_mask=causal_mask(6) against PyTorch's is_causal=True", "True must mean 'may attend'")


# ------------------------------------------------------------------------------------------ split_heads / merge_heads
@exercise("attention.py::split_heads")
def test_split_heads_gives_each_head_its_slice(solution):
    B, T, H, Dh = 2, 5, 3, 4
    x = torch.randn(B, T, H * Dh)
    got = solution(x, H)
    assert isinstance(got, torch.Tensor) and got.shape == (B, H, T, Dh), (
        f"split_heads((2, 5, 12), 3): expected shape (B, H, T, Dh) = {(B, H, T, Dh)}, got "
        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    for h in range(H):
        same(got[:, h], x[:, :, h * Dh:(h + 1) * Dh], f"split_heads(x, 3)[:, {h}]",
             "head h must hold features h*Dh .. (h+1)*Dh - 1 of every token: view(B, T, H, Dh) then transpose(1, 2)")


@exercise("attention.py::merge_heads")
def test_merge_heads_puts_the_heads_side_by_side(solution):
    B, H, T, Dh = 2, 3, 5, 4
    x = torch.randn(B, H, T, Dh)
    got = solution(x)
    assert isinstance(got, torch.Tensor) and got.shape == (B, T, H * Dh), (
        f"merge_heads((2, 3, 5, 4)): expected shape (B, T, H*Dh) = {(B, T, H * Dh)}, got "
        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    for h in range(H):
        same(got[:, :, h * Dh:(h + 1) * Dh], x[:, h], f"merge_heads(x)[:, :, {h * Dh}:{(h + 1) * Dh}]",
             "features h*Dh .. (h+1)*Dh - 1 must come from head h: transpose(1, 2) before the view")


@exercise("attention.py::merge_heads")
def test_merge_heads_accepts_non_contiguous_input(solution):
    x = torch.randn(2, 5, 3, 4).transpose(1, 2)  # (B, H, T, Dh), not contiguous, like attention's output after a view
    close(solution(x), x.transpose(1, 2).reshape(2, 5, 12), "merge_heads of a non-contiguous tensor",
          "a transposed tensor needs .contiguous() before .view, or use .reshape")


# ----------------------------------------------------------------------------------- scaled_dot_product_attention
HINT_SDPA = "Eq. 3.1-3.4: softmax over the last axis of q @ k^T / sqrt(Dh), masked, then @ v"


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_matches_pytorch_without_a_mask(solution):
    q = torch.randn(2, 3, 4, 8)  # (B, H, T_q, Dh)
    k = torch.randn(2, 3, 6, 8)  # (B, H, T_k, Dh)
    v = torch.randn(2, 3, 6, 5)  # (B, H, T_k, Dv): Dv may differ from Dh
    close(solution(q, k, v), F.scaled_dot_product_attention(q, k, v), "attention, no mask, T_q=4, T_k=6", HINT_SDPA)


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_is_causal_matches_pytorch_values_and_gradients(solution):
    qkv = torch.randn(3, 2, 2, 5, 8, requires_grad=True)
    out = solution(*qkv, is_causal=True)
    ref_qkv = qkv.detach().clone().requires_grad_(True)
    ref = F.scaled_dot_product_attention(*ref_qkv, is_causal=True)
    close(out, ref, "attention with is_causal=True", "query i sees keys j <= i: fill the scores above the diagonal with -inf")
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    close(qkv.grad, ref_qkv.grad, "gradients of q, k, v with is_causal=True",
          "use differentiable torch operations only (no .item(), no numpy, no in-place writes to leaves)")


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_bool_and_float_masks_match_pytorch(solution):
    q, k, v = torch.randn(3, 2, 3, 5, 8).unbind(0)
    allowed = torch.rand(5, 5) < 0.6
    allowed[:, 0] = True  # every query sees at least one key
    close(solution(q, k, v, attn_mask=allowed), F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
          "attention with a bool (T, T) mask", "bool masks: True = may attend, so fill scores where the mask is False")
    padding = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None, :]  # (B, 1, 1, T_k)
    close(solution(q, k, v, attn_mask=padding), F.scaled_dot_product_attention(q, k, v, attn_mask=padding),
          "attention with a (B, 1, 1, T_k) padding mask", "the mask broadcasts against the scores (B, H, T_q, T_k)")
    bias = torch.randn(5, 5)
    close(solution(q, k, v, attn_mask=bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
          "attention with a float mask", "a float mask is added to the scores (after the 1/sqrt(Dh) scaling)")


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_returns_the_attention_weights(solution):
    q, k = torch.randn(2, 2, 3, 4, 8).unbind(0)  # (B, H, T, Dh)
    v = torch.randn(2, 3, 4, 8)
    result = solution(q, k, v, is_causal=True, return_weights=True)
    assert isinstance(result, tuple) and len(result) == 2, "with return_weights=True, return (out, weights)"
    out, weights = result
    identity = torch.eye(4).expand(2, 3, 4, 4)  # attention applied to the identity "values" returns the weights
    close(weights, F.scaled_dot_product_attention(q, k, identity, is_causal=True), "the causal attention weights",
          "weights = softmax(masked scores), shape (..., T_q, T_k); each row sums to 1")
    close(out, weights @ v, "out against weights @ v", "Eq. 3.4: the output is the weighted average of the values")


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_row_with_every_key_masked_gives_zeros(solution):
    q, k, v = torch.randn(3, 1, 1, 3, 8).unbind(0)
    allowed = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out = solution(q, k, v, attn_mask=allowed)
    assert isinstance(out, torch.Tensor) and not torch.isnan(out).any(), (
        f"query 1 may see no key: expected a zero row, got NaN in {out}. softmax of all -inf is 0/0; "
        "find such rows with torch.isneginf(scores).all(-1, keepdim=True), fill their scores with 0, zero their weights")
    close(out[..., 1, :], torch.zeros(1, 1, 8), "the output of a query that may see no key", "it must be all zeros")
    close(out[..., [0, 2], :], F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)[..., [0, 2], :],
          "the other queries' outputs", HINT_SDPA)


@exercise("attention.py::scaled_dot_product_attention")
def test_sdpa_scales_by_sqrt_of_head_size(solution):
    q = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])  # (1, T_q=1, Dh=4)
    k = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])  # (1, T_k=2, 4): scores 4 and 0 before scaling
    v = torch.tensor([[[1.0], [0.0]]])  # (1, 2, 1): the output is the weight of key 0
    w0 = math.exp(2.0) / (math.exp(2.0) + 1.0)  # softmax([4 / sqrt(4), 0])[0]
    close(solution(q, k, v), torch.tensor([[[w0]]]), "softmax([4, 0] / sqrt(4)) . [1, 0]",
          "divide the scores by sqrt(Dh) = 2 (Dh = q.shape[-1]), not by Dh and not by T")
