"""Exercises of lectures/04_block.ipynb, checked against F.layer_norm, F.gelu and nn.TransformerEncoderLayer."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from exercise_checks import close

from minilm.config import ModelConfig

exercise = pytest.mark.exercise


def _randomize(module: nn.Module) -> nn.Module:
    """Random weights everywhere (LayerNorm gains included), so that swapped or skipped parameters show."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 and "norm" in _name(module, p) else 0.0))
    return module


def _name(module: nn.Module, param: torch.Tensor) -> str:
    return next(n for n, p in module.named_parameters() if p is param)


# ----------------------------------------------------------------------------------------------------- layer_norm
@exercise("block.py::layer_norm")
def test_layer_norm_matches_pytorch(solution):
    x = torch.randn(2, 3, 8) * 5 + 3  # (B, T, D): far from zero mean and unit variance
    w, b = torch.randn(8), torch.randn(8)
    close(solution(x, w, b, 1e-5), F.layer_norm(x, (8,), w, b, 1e-5), "layer_norm(x, weight, bias, 1e-5)",
          "normalise over the last axis with the biased variance (divide by D = 8, not D - 1), then * weight + bias")


@exercise("block.py::layer_norm")
def test_layer_norm_without_weight_and_bias(solution):
    x = torch.randn(4, 6) * 2 - 1
    close(solution(x, None, None, 1e-5), F.layer_norm(x, (6,), None, None, 1e-5), "layer_norm(x, None, None, 1e-5)",
          "weight None means no scaling, bias None no shift")


@exercise("block.py::layer_norm")
def test_layer_norm_puts_eps_inside_the_square_root(solution):
    x = torch.randn(3, 4) * 0.5
    close(solution(x, None, None, 0.5), F.layer_norm(x, (4,), None, None, 0.5), "layer_norm with a large eps = 0.5",
          "Eq. 4.1 divides by sqrt(var + eps), not sqrt(var) + eps")


# ----------------------------------------------------------------------------------------------------------- gelu
@exercise("block.py::gelu")
def test_gelu_exact_and_tanh_match_pytorch(solution):
    x = torch.linspace(-6, 6, 49)
    close(solution(x, "none"), F.gelu(x), "gelu(x, 'none')", "Eq. 4.2: 0.5 x (1 + erf(x / sqrt 2))")
    close(solution(x), F.gelu(x), "gelu(x) with the default approximate", "the default is 'none', the exact GELU")
    close(solution(x, "tanh"), F.gelu(x, approximate="tanh"), "gelu(x, 'tanh')",
          "Eq. 4.3: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))")


@exercise("block.py::gelu")
def test_gelu_rejects_unknown_approximations(solution):
    with pytest.raises(ValueError):
        solution(torch.zeros(3), "sigmoid")


# ------------------------------------------------------------------------------------------------------------ MLP
@pytest.mark.parametrize("gelu,bias", [("exact", True), ("tanh", True), ("tanh", False)])
@exercise("block.py::MLP")
def test_mlp_matches_linear_gelu_linear(solution, gelu, bias):
    config = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=2, n_layers=1, gelu=gelu, bias=bias)
    mlp = _randomize(solution(config)).eval()
    x = torch.randn(2, 5, 16)  # (B, T, D)
    W1, W2 = mlp.fc_in.weight, mlp.fc_out.weight
    b1, b2 = (mlp.fc_in.bias, mlp.fc_out.bias) if bias else (None, None)
    expected = F.linear(F.gelu(F.linear(x, W1, b1), approximate="tanh" if gelu == "tanh" else "none"), W2, b2)
    close(mlp(x), expected, f"MLP(config with gelu={gelu!r}, bias={bias})(x)",
          "Eq. 4.4: fc_out(GELU(fc_in(x))), GELU as self.approximate says, then dropout")


# --------------------------------------------------------------------------------------------- TransformerBlock
def _torch_layer(block: nn.Module, config: ModelConfig) -> nn.TransformerEncoderLayer:
    """PyTorch's own pre-norm encoder layer holding the student's weights."""
    layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, config.d_ff, dropout=0.0, activation="gelu",
                                       layer_norm_eps=config.norm_eps, batch_first=True, norm_first=True)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv_proj.weight)  # rows: W_Q | W_K | W_V in both
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv_proj.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.out_proj.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.out_proj.bias)
        for mine, theirs in [(block.norm1, layer.norm1), (block.norm2, layer.norm2),
                             (block.mlp.fc_in, layer.linear1), (block.mlp.fc_out, layer.linear2)]:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return layer.train()  # training mode with dropout 0: the plain path, not the nested-tensor fast path


HINT_BLOCK = "Eqs. 4.5-4.6, pre-norm: x = x + attn(norm1(x), ...); x = x + mlp(norm2(x)); not LN(x + Sublayer(x))"


@exercise("block.py::TransformerBlock")
def test_block_matches_pytorch_pre_norm_encoder_layer_causal(solution):
    config = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=4, n_layers=1, gelu="exact")
    block = _randomize(solution(config)).eval()
    layer = _torch_layer(block, config)
    x = torch.randn(2, 6, 16)  # (B, T, D)
    mask = nn.Transformer.generate_square_subsequent_mask(6)  # float, -inf above the diagonal
    close(block(x), layer(x, src_mask=mask, is_causal=True),
          "TransformerBlock (causal) against nn.TransformerEncoderLayer(norm_first=True)", HINT_BLOCK)


@exercise("block.py::TransformerBlock")
def test_block_matches_pytorch_bidirectional_with_padding(solution):
    config = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=2, n_layers=1, gelu="exact", causal=False)
    block = _randomize(solution(config)).eval()
    layer = _torch_layer(block, config)
    x = torch.randn(2, 5, 16)
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # (B, T): 1 = token, 0 = pad
    got = block(x, attention_mask)
    expected = layer(x, src_key_padding_mask=attention_mask == 0)
    keep = attention_mask.bool()
    close(got[keep], expected[keep], "TransformerBlock (bidirectional, padded) on the real tokens",
          HINT_BLOCK + "; pass attention_mask on to self.attn")
