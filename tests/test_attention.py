"""Hand-written attention against PyTorch's fused kernel (the oracle), masks, heads, and the KV cache."""

import pytest
import torch
import torch.nn.functional as F

from minilm.attention import (KVCache, MultiHeadAttention, causal_mask, merge_heads, scaled_dot_product_attention,
                              split_heads)
from minilm.config import ModelConfig

B, H, T, Dh = 2, 3, 7, 8


def _qkv(T_q=T, T_k=T):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, H, T_q, Dh, generator=g, dtype=torch.float64).float().requires_grad_()
    k = torch.randn(B, H, T_k, Dh, generator=g).requires_grad_()
    v = torch.randn(B, H, T_k, Dh, generator=g).requires_grad_()
    return q, k, v


def _padding_mask():
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[0, 5:] = False  # the first row has two pad tokens at the end
    return keep[:, None, None, :]  # (B, 1, 1, T)


MASKS = {
    "none": dict(),
    "causal": dict(is_causal=True),
    "bool": dict(attn_mask=torch.rand(T, T, generator=torch.Generator().manual_seed(2)) > 0.3),
    "float": dict(attn_mask=torch.randn(B, 1, T, T, generator=torch.Generator().manual_seed(3))),
    "padding": dict(attn_mask=_padding_mask()),
}


@pytest.mark.parametrize("name", MASKS)
def test_matches_pytorch_outputs_and_gradients(name):
    kwargs = MASKS[name]
    if name == "bool":  # make sure no row is fully masked, where PyTorch returns NaN and we return zeros
        kwargs["attn_mask"][:, 0] = True
    q, k, v = _qkv()
    ours = scaled_dot_product_attention(q, k, v, **kwargs)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    ref = F.scaled_dot_product_attention(q, k, v, **kwargs)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, atol=1e-5, rtol=1e-5)


def test_rectangular_causal_is_top_left_aligned_like_pytorch():
    q, k, v = _qkv(T_q=3, T_k=T)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5, rtol=1e-5)


def test_weights_are_a_distribution_over_visible_keys():
    q, k, v = _qkv()
    _, w = scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T))
    assert torch.all(w.triu(diagonal=1) == 0), "a query attended to a future key"


def test_fully_masked_row_gives_zeros_not_nan():
    q, k, v = _qkv()
    mask = torch.ones(T, T, dtype=torch.bool)
    mask[2] = False  # query 2 may see nothing
    out = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    assert torch.all(out[:, :, 2] == 0)
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_causal_mask_bottom_right_for_cache():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())


def test_split_merge_heads_round_trip_and_layout():
    x = torch.randn(B, T, 24)
    h = split_heads(x, 3)
    assert h.shape == (B, 3, T, 8)
    torch.testing.assert_close(h[:, 1], x[:, :, 8:16])  # head 1 owns features 8..15
    torch.testing.assert_close(merge_heads(h), x)


@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_mode_equals_manual_mode_with_padding(causal):
    cfg = ModelConfig(d_model=24, n_heads=3, causal=causal)
    manual = MultiHeadAttention(cfg).eval()
    fused = MultiHeadAttention(ModelConfig(d_model=24, n_heads=3, causal=causal, attn_impl="sdpa")).eval()
    fused.load_state_dict(manual.state_dict())
    x = torch.randn(B, T, 24)
    am = torch.ones(B, T, dtype=torch.long)
    am[1, :3] = 0  # left padding: with a causal mask, queries 0..2 of row 1 see nothing
    for mask in (None, am):
        torch.testing.assert_close(manual(x, mask), fused(x, mask), atol=1e-5, rtol=1e-5)


def test_padding_keys_are_ignored():
    mha = MultiHeadAttention(ModelConfig(d_model=24, n_heads=3, causal=False)).eval()
    x = torch.randn(1, 5, 24)
    padded = torch.cat([x, torch.randn(1, 3, 24)], dim=1)  # 3 pad positions with arbitrary content
    am = torch.tensor([[1] * 5 + [0] * 3])
    torch.testing.assert_close(mha(padded, am)[:, :5], mha(x), atol=1e-5, rtol=1e-5)


def test_kv_cache_incremental_equals_full():
    mha = MultiHeadAttention(ModelConfig(d_model=24, n_heads=3, causal=True)).eval()
    x = torch.randn(B, T, 24)
    full = mha(x)
    cache = KVCache(max_len=T)
    steps = [mha(x[:, :4], kv_cache=cache)] + [mha(x[:, t:t + 1], kv_cache=cache) for t in range(4, T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(AssertionError, match="KV cache holds"):
        mha(x[:, :1], kv_cache=cache)


def test_record_weights_for_plots():
    mha = MultiHeadAttention(ModelConfig(d_model=24, n_heads=3, attn_impl="sdpa")).eval()
    mha.record_weights = True
    mha(torch.randn(1, 5, 24))
    assert mha.attn_weights.shape == (1, 3, 5, 5)
