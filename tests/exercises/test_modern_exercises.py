"""Exercises of lectures/09_modern_blocks.ipynb, checked against F.rms_norm, F.silu, Hugging Face's Llama RoPE and
repeat_kv, F.scaled_dot_product_attention(enable_gqa=True) and torch.optim.AdamW."""

import pytest
import torch
import torch.nn.functional as F
from exercise_checks import close

from minilm.config import ModelConfig

exercise = pytest.mark.exercise
transformers = pytest.importorskip("transformers")
from transformers.models.llama import modeling_llama  # noqa: E402


# ------------------------------------------------------------------------------------------------------- rms_norm
@exercise("block.py::rms_norm")
def test_rms_norm_matches_pytorch(solution):
    x = torch.randn(2, 3, 8) * 4 + 2  # far from zero mean: RMSNorm must not subtract it
    w = torch.randn(8)
    close(solution(x, w, 1e-5), F.rms_norm(x, (8,), w, 1e-5), "rms_norm(x, weight, 1e-5)",
          "divide by sqrt(mean of x^2 over the last axis + eps), then * weight; no mean is subtracted")


@exercise("block.py::rms_norm")
def test_rms_norm_without_weight_and_with_a_large_eps(solution):
    x = torch.randn(4, 6) * 0.5
    close(solution(x, None, 0.5), F.rms_norm(x, (6,), None, 0.5), "rms_norm(x, None, 0.5)",
          "weight None means no scaling; Eq. 9.1 puts eps inside the square root")


# --------------------------------------------------------------------------------------------------------- SwiGLU
@exercise("block.py::SwiGLU")
@pytest.mark.parametrize("bias", [False, True])
def test_swiglu_matches_its_formula_with_f_silu(solution, bias):
    torch.manual_seed(0)
    c = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=2, n_layers=1, mlp="swiglu", bias=bias)
    mlp = solution(c).eval()
    x = torch.randn(2, 5, 16)
    g, u, o = mlp.fc_gate, mlp.fc_in, mlp.fc_out
    with torch.no_grad():
        expected = o(F.silu(g(x)) * u(x))
        got = mlp(x)
    close(got, expected, "SwiGLU(config)(x)",
          "fc_out(silu(fc_gate(x)) * fc_in(x)); the SiLU goes on the gate branch only")


# ----------------------------------------------------------------------------------------------------- apply_rope
def _hf_rope(q: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    Dh = q.shape[-1]
    cfg = transformers.LlamaConfig(hidden_size=2 * Dh, num_attention_heads=2, head_dim=Dh,
                                   rope_parameters={"rope_type": "default", "rope_theta": theta})
    cos, sin = modeling_llama.LlamaRotaryEmbedding(cfg)(q, positions if positions.dim() == 2 else positions[None])
    return modeling_llama.apply_rotary_pos_emb(q, q, cos, sin)[0]


@exercise("attention.py::apply_rope")
def test_apply_rope_matches_hugging_face(solution):
    q = torch.randn(2, 3, 7, 8)  # (B, H, T, Dh)
    positions = torch.arange(7) + 2
    close(solution(q, positions, 10000.0), _hf_rope(q, positions, 10000.0), "apply_rope(q, positions (T,), 10000)",
          "pair feature i with i + Dh/2 (rotate_half), angles m * theta^(-2i/Dh) written twice: x*cos + rotate_half(x)*sin")
    close(solution(q, positions), _hf_rope(q, positions, 10000.0), "apply_rope(q, positions) with the default theta",
          "the default theta is 10000")


@exercise("attention.py::apply_rope")
def test_apply_rope_with_batched_positions_and_another_theta(solution):
    q = torch.randn(2, 3, 5, 4)
    positions = torch.tensor([[0, 1, 2, 3, 4], [10, 12, 14, 16, 18]])  # (B, T): each row its own positions
    close(solution(q, positions, 500.0), _hf_rope(q, positions, 500.0), "apply_rope(q, positions (B, T), 500)",
          "with (B, T) positions the cos/sin are (B, T, Dh): add the head axis, cos[:, None]")


@exercise("attention.py::apply_rope")
def test_apply_rope_scores_depend_only_on_the_distance(solution):
    q, k = torch.randn(2, 1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        return (solution(q, torch.tensor([m])) * solution(k, torch.tensor([n]))).sum()

    close(score(7, 4), score(3, 0), "q . k at positions (7, 4) vs (3, 0)", "RoPE (Eq. 9.7): only m - n may matter",
          atol=1e-4)


# ------------------------------------------------------------------------------------------------------ repeat_kv
@exercise("attention.py::repeat_kv")
def test_repeat_kv_matches_hugging_face(solution):
    k = torch.randn(2, 3, 5, 4)  # (B, H_kv, T, Dh)
    for n_rep in (1, 2, 4):
        close(solution(k, n_rep), modeling_llama.repeat_kv(k, n_rep), f"repeat_kv(k, {n_rep})",
              "query head h reads kv head h // n_rep: kv head 0 first n_rep times, then kv head 1, ...")


@exercise("attention.py::repeat_kv")
def test_repeat_kv_gives_pytorchs_grouped_query_attention(solution):
    q, k, v = torch.randn(2, 6, 5, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)  # H = 6, H_kv = 2
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    got = F.scaled_dot_product_attention(q, solution(k, 3), solution(v, 3), is_causal=True)
    close(got, expected, "attention with repeat_kv(k, 3), repeat_kv(v, 3)", "the grouping must match PyTorch's GQA")


# ----------------------------------------------------------------------------------------------------- adamw_step
@exercise("optim.py::adamw_step")
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_step_matches_torch_adamw(solution, weight_decay):
    torch.manual_seed(0)
    theirs = torch.randn(4, 3, requires_grad=True)
    mine = theirs.detach().clone()
    m, v = torch.zeros(4, 3), torch.zeros(4, 3)
    ref = torch.optim.AdamW([theirs], lr=0.05, betas=(0.8, 0.95), eps=1e-8, weight_decay=weight_decay)
    for t in range(1, 6):
        g = torch.randn(4, 3)
        solution(mine, g, m, v, t, 0.05, 0.8, 0.95, 1e-8, weight_decay)
        theirs.grad = g.clone()
        ref.step()
        close(mine, theirs.detach(), f"the parameter after step {t}",
              "update param, m and v in place (mul_, add_, addcmul_, addcdiv_); bias-correct with step t; decay "
              "multiplies param by (1 - lr wd) first", atol=1e-6)
    close(m, ref.state[theirs]["exp_avg"], "exp_avg (m) after 5 steps", "Eq. 6.2, in place")
    close(v, ref.state[theirs]["exp_avg_sq"], "exp_avg_sq (v) after 5 steps", "Eq. 6.3, in place")
