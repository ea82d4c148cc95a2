"""LayerNorm and GELU against PyTorch's own, and the pre-norm residual block."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm.block import MLP, LayerNorm, TransformerBlock, gelu, layer_norm
from minilm.config import ModelConfig


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_equals_nn_layernorm(bias):
    ours, ref = LayerNorm(16, eps=1e-5, bias=bias), nn.LayerNorm(16, eps=1e-5, bias=bias)
    with torch.no_grad():
        ref.weight.normal_()
        ours.weight.copy_(ref.weight)
        if bias:
            ref.bias.normal_()
            ours.bias.copy_(ref.bias)
    x = (torch.randn(3, 5, 16) * 4 + 2).requires_grad_()
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    g1 = torch.autograd.grad(ours(x).pow(2).sum(), x)[0]
    g2 = torch.autograd.grad(ref(x).pow(2).sum(), x)[0]
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)


def test_layer_norm_function_normalises():
    y = layer_norm(torch.randn(4, 32) * 10 + 3, None, None, 1e-5)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_equals_torch(approximate):
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate), atol=1e-6, rtol=1e-6)


def test_gelu_rejects_unknown_variant():
    with pytest.raises(ValueError, match="approximate"):
        gelu(torch.zeros(1), "relu")


def test_mlp_shape_and_width():
    cfg = ModelConfig(d_model=16, n_heads=2)
    mlp = MLP(cfg)
    assert mlp.fc_in.out_features == 64  # d_ff defaults to 4 * d_model
    assert mlp(torch.randn(2, 3, 16)).shape == (2, 3, 16)


def test_block_is_pre_norm_residual():
    """With attention and MLP outputs zeroed, a pre-norm block is the identity (the residual path is clean)."""
    blk = TransformerBlock(ModelConfig(d_model=16, n_heads=2)).eval()
    with torch.no_grad():
        for lin in (blk.attn.out_proj, blk.mlp.fc_out):
            lin.weight.zero_()
            lin.bias.zero_()
    x = torch.randn(2, 5, 16) * 7
    torch.testing.assert_close(blk(x), x)


def test_block_matches_pytorch_encoder_layer():
    """Oracle: nn.TransformerEncoderLayer(norm_first=True) is the same computation when given the same weights."""
    cfg = ModelConfig(d_model=16, n_heads=2, gelu="exact", causal=False)
    ours = TransformerBlock(cfg).eval()
    ref = nn.TransformerEncoderLayer(16, 2, dim_feedforward=64, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True, layer_norm_eps=cfg.norm_eps).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(ours.attn.qkv_proj.weight)
        ref.self_attn.in_proj_bias.copy_(ours.attn.qkv_proj.bias)
        ref.self_attn.out_proj.weight.copy_(ours.attn.out_proj.weight)
        ref.self_attn.out_proj.bias.copy_(ours.attn.out_proj.bias)
        ref.linear1.weight.copy_(ours.mlp.fc_in.weight)
        ref.linear1.bias.copy_(ours.mlp.fc_in.bias)
        ref.linear2.weight.copy_(ours.mlp.fc_out.weight)
        ref.linear2.bias.copy_(ours.mlp.fc_out.bias)
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_fused_layernorm_equals_manual():
    manual, fused = LayerNorm(16), LayerNorm(16, fused=True)
    with torch.no_grad():
        manual.weight.normal_()
        manual.bias.normal_()
    fused.load_state_dict(manual.state_dict())
    x = (torch.randn(3, 5, 16) * 3 + 1).requires_grad_()
    torch.testing.assert_close(fused(x), manual(x), atol=1e-5, rtol=1e-5)
    g1 = torch.autograd.grad(manual(x).pow(2).sum(), x)[0]
    g2 = torch.autograd.grad(fused(x).pow(2).sum(), x)[0]
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast both normalise bf16 input in float32
        xb = x.detach().bfloat16()
        torch.testing.assert_close(fused(xb).float(), manual(xb).float(), atol=1e-2, rtol=1e-2)
