"""GPT-2 -> Llama options (RMSNorm, SwiGLU, RoPE, GQA), Llama loading and the hand-written AdamW, against oracles:
F.rms_norm, F.silu, Hugging Face's apply_rotary_pos_emb / repeat_kv / LlamaForCausalLM, torch.optim.AdamW."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import pytest
import torch
import torch.nn.functional as F

from minilm.attention import KVCache, MultiHeadAttention, apply_rope, kv_cache_bytes, repeat_kv
from minilm.block import RMSNorm, SwiGLU, TransformerBlock, rms_norm
from minilm.config import ModelConfig, swiglu_hidden_size
from minilm.model import CausalLM, MaskedLM
from minilm.optim import AdamW, adamw_step
from minilm.training import configure_optimizer

transformers = pytest.importorskip("transformers")
from transformers.models.llama import modeling_llama  # noqa: E402

LLAMA = dict(norm="rmsnorm", mlp="swiglu", pos_emb="rope", n_kv_heads=2)
SMALL = dict(vocab_size=37, max_seq_len=16, d_model=32, n_heads=4, n_layers=2)


# ------------------------------------------------------------------------------------------------------ config
def test_defaults_are_gpt2_and_old_config_dicts_load_unchanged():
    c = ModelConfig(**SMALL)
    assert (c.norm, c.mlp, c.pos_emb, c.rope_theta, c.n_kv_heads, c.d_ff) == ("layernorm", "gelu", "learned", 1e4, 4, 128)
    old = {k: v for k, v in c.to_dict().items() if k not in ("norm", "mlp", "pos_emb", "rope_theta", "n_kv_heads")}
    assert ModelConfig.from_dict(old) == c  # a checkpoint saved before these fields existed
    names = [n for n, _ in CausalLM(c).named_parameters()]
    assert "backbone.pos_emb.weight" in names and "backbone.blocks.0.attn.qkv_proj.weight" in names
    assert CausalLM(c).backbone.blocks[0].attn.qkv_proj.weight.shape == (3 * 32, 32)
    assert not any("fc_gate" in n for n in names)


def test_swiglu_hidden_size_follows_the_llama_rule():
    assert swiglu_hidden_size(128) == 384  # int(1024 / 3) = 341 -> 384
    assert swiglu_hidden_size(768) == 2048  # GPT-2 small's width: 2048 exactly
    assert swiglu_hidden_size(4096, multiple_of=256) == 11008  # Llama 1/2 7B's intermediate_size
    assert ModelConfig(**SMALL, mlp="swiglu").d_ff == swiglu_hidden_size(32)
    assert ModelConfig(**SMALL, mlp="swiglu", d_ff=50).d_ff == 50


@pytest.mark.parametrize("bad, phrase", [
    (dict(n_kv_heads=3), "n_kv_heads \\(3\\) must divide n_heads \\(4\\)"),
    (dict(n_kv_heads=0), "n_kv_heads must be a positive integer"),
    (dict(d_model=36, n_heads=4, pos_emb="rope"), "needs an even d_head"),
    (dict(norm="batchnorm"), "norm must be 'layernorm' or 'rmsnorm'"),
    (dict(mlp="relu"), "mlp must be 'gelu' or 'swiglu'"),
    (dict(pos_emb="alibi"), "pos_emb must be 'learned' or 'rope'"),
    (dict(rope_theta=0.0), "rope_theta must be > 0"),
])
def test_bad_options_are_one_clear_error(bad, phrase):
    with pytest.raises(ValueError, match=phrase):
        ModelConfig(**{**SMALL, **bad})


# ---------------------------------------------------------------------------------------------------- RMSNorm
def test_rms_norm_matches_pytorch():
    x = torch.randn(2, 5, 16) * 3 + 1
    w = torch.randn(16)
    torch.testing.assert_close(rms_norm(x, w, 1e-5), F.rms_norm(x, (16,), w, 1e-5))
    torch.testing.assert_close(rms_norm(x, None, 0.5), F.rms_norm(x, (16,), None, 0.5))


@pytest.mark.parametrize("fused", [False, True])
def test_rmsnorm_module_matches_hugging_face_and_keeps_dtype(fused):
    norm = RMSNorm(16, eps=1e-6, fused=fused)
    hf = modeling_llama.LlamaRMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
        hf.weight.copy_(norm.weight)
    x = torch.randn(3, 4, 16) * 2
    torch.testing.assert_close(norm(x), hf(x))
    assert norm(x.bfloat16()).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------------- SwiGLU
@pytest.mark.parametrize("fused", [False, True])
def test_swiglu_equals_its_formula(fused):
    c = ModelConfig(**SMALL, mlp="swiglu", bias=False, fused_kernels=fused)
    mlp = SwiGLU(c)
    x = torch.randn(2, 5, 32)
    wg, wi, wo = mlp.fc_gate.weight, mlp.fc_in.weight, mlp.fc_out.weight
    expected = (F.silu(x @ wg.T) * (x @ wi.T)) @ wo.T
    torch.testing.assert_close(mlp(x), expected)
    assert wg.shape == (c.d_ff, 32) and wo.shape == (32, c.d_ff)


def test_block_picks_norm_and_mlp():
    block = TransformerBlock(ModelConfig(**SMALL, norm="rmsnorm", mlp="swiglu"))
    assert isinstance(block.norm1, RMSNorm) and isinstance(block.mlp, SwiGLU)


# ------------------------------------------------------------------------------------------------------- RoPE
def _hf_cos_sin(Dh: int, positions: torch.Tensor, theta: float):
    cfg = transformers.LlamaConfig(hidden_size=Dh * 2, num_attention_heads=2, head_dim=Dh,
                                   rope_parameters={"rope_type": "default", "rope_theta": theta})
    rope = modeling_llama.LlamaRotaryEmbedding(cfg)
    pos = positions if positions.dim() == 2 else positions[None]
    return rope(torch.zeros(1, dtype=torch.float32), pos)  # (B or 1, T, Dh) each


@pytest.mark.parametrize("batched", [False, True])
def test_apply_rope_matches_hugging_face(batched):
    B, H, T, Dh, theta = 2, 3, 7, 8, 500.0
    q, k = torch.randn(2, B, H, T, Dh)
    positions = torch.stack([torch.arange(T) + 5, torch.arange(T) * 2]) if batched else torch.arange(T) + 3
    cos, sin = _hf_cos_sin(Dh, positions, theta)
    hq, hk = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)  # unsqueeze_dim=1: over the heads
    torch.testing.assert_close(apply_rope(q, positions, theta), hq)
    torch.testing.assert_close(apply_rope(k, positions, theta), hk)


def test_rope_scores_depend_only_on_the_distance():
    q, k = torch.randn(2, 16, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        rq = apply_rope(q[None], torch.tensor([m]))[0]
        rk = apply_rope(k[None], torch.tensor([n]))[0]
        return float(rq @ rk)

    for m, n in [(5, 2), (9, 6), (103, 100), (3, 0)]:  # all m - n = 3
        assert math.isclose(score(m, n), score(3, 0), rel_tol=1e-9, abs_tol=1e-9)
    assert not math.isclose(score(5, 2), score(5, 1), rel_tol=1e-3)
    assert torch.allclose(apply_rope(q[None], torch.tensor([0]))[0], q)  # position 0: no rotation
    assert math.isclose(float(apply_rope(q[None], torch.tensor([42]))[0].norm()), float(q.norm()), rel_tol=1e-9)


def test_rope_model_has_no_position_table():
    m = CausalLM(ModelConfig(**SMALL, pos_emb="rope"))
    assert m.backbone.pos_emb is None and not any("pos_emb" in n for n, _ in m.named_parameters())
    assert m.num_params(non_embedding=True) == m.num_params()
    mlm = MaskedLM(ModelConfig(**SMALL, **LLAMA))  # the masked LM takes the same options
    assert mlm(torch.randint(0, 37, (2, 8)))[0].shape == (2, 8, 37)


def test_rope_positions_count_on_from_the_cache():
    """New tokens after 4 cached ones sit at positions 4..9: the same output as attending over all 10 at once."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(ModelConfig(**SMALL, pos_emb="rope", n_kv_heads=2)).eval()
    prefix, x = torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    cache = KVCache(16)
    with torch.no_grad():
        attn(prefix, kv_cache=cache)
        cached = attn(x, kv_cache=cache)
        full = attn(torch.cat([prefix, x], dim=1))[:, 4:]
        fresh = attn(x)  # the same tokens at positions 0..5 see other keys and angles
    torch.testing.assert_close(cached, full)
    assert not torch.allclose(cached, fresh, atol=1e-3)


# -------------------------------------------------------------------------------------------------------- GQA
def test_repeat_kv_matches_hugging_face():
    x = torch.randn(2, 3, 5, 4)
    for n_rep in (1, 2, 4):
        torch.testing.assert_close(repeat_kv(x, n_rep), modeling_llama.repeat_kv(x, n_rep))


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_gqa_attention_matches_pytorch_enable_gqa(n_kv):
    c = ModelConfig(**SMALL, n_kv_heads=n_kv, bias=False)
    attn = MultiHeadAttention(c).eval()
    assert attn.qkv_proj.weight.shape == (32 + 2 * n_kv * 8, 32)
    x = torch.randn(2, 6, 32)
    q, k, v = attn.qkv_proj(x).split([32, n_kv * 8, n_kv * 8], dim=2)
    q = q.view(2, 6, 4, 8).transpose(1, 2)
    k = k.view(2, 6, n_kv, 8).transpose(1, 2)
    v = v.view(2, 6, n_kv, 8).transpose(1, 2)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(attn(x), attn.out_proj(y.transpose(1, 2).reshape(2, 6, 32)))


def test_kv_cache_holds_only_the_kv_heads_and_matches_the_arithmetic():
    c = ModelConfig(**SMALL, n_kv_heads=1, pos_emb="rope")
    m = CausalLM(c).eval()
    caches = [KVCache(c.max_seq_len) for _ in m.backbone.blocks]
    with torch.no_grad():
        m.backbone(torch.randint(0, 37, (3, 5)), kv_caches=caches)
    assert caches[0].k.shape == (3, 1, 16, 8)
    allocated = sum(t.numel() * t.element_size() for cache in caches for t in (cache.k, cache.v))
    assert allocated == kv_cache_bytes(c, seq_len=16, batch_size=3, bytes_per_value=4)
    gpt2_small = ModelConfig(vocab_size=50257, max_seq_len=1024, d_model=768, n_heads=12, n_layers=12)
    assert kv_cache_bytes(gpt2_small, 1024) == 2 * 12 * 12 * 64 * 1024 * 2  # 36 MiB per sequence in bf16
    assert kv_cache_bytes(ModelConfig(**{**gpt2_small.to_dict(), "n_kv_heads": 4}), 1024) * 3 == \
        kv_cache_bytes(gpt2_small, 1024)


@pytest.mark.parametrize("extra", [LLAMA, dict(pos_emb="rope", n_kv_heads=1), dict(n_kv_heads=1)],
                         ids=["llama", "rope-mqa", "mqa"])
def test_cached_greedy_generation_equals_recompute(extra):
    torch.manual_seed(0)
    m = CausalLM(ModelConfig(**SMALL, **extra)).eval()
    prompt = torch.randint(0, 37, (2, 5))
    a = m.generate(prompt, 20, temperature=0.0, use_cache=True)  # runs past max_seq_len=16: the window slides
    b = m.generate(prompt, 20, temperature=0.0, use_cache=False)
    assert torch.equal(a, b)


def test_fused_attention_and_kernels_equal_the_hand_written_path_with_the_llama_options():
    torch.manual_seed(0)
    manual = CausalLM(ModelConfig(**SMALL, **LLAMA)).eval()
    fused = CausalLM(ModelConfig(**SMALL, **LLAMA, attn_impl="sdpa", fused_kernels=True)).eval()
    fused.load_state_dict(manual.state_dict())
    idx = torch.randint(0, 37, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(fused(idx)[0], manual(idx)[0], atol=1e-5, rtol=1e-4)


def test_rope_gqa_model_is_causal():
    torch.manual_seed(0)
    m = CausalLM(ModelConfig(**SMALL, **LLAMA)).eval()
    idx = torch.randint(0, 37, (1, 10))
    changed = idx.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 37
    with torch.no_grad():
        torch.testing.assert_close(m(idx)[0][:, :6], m(changed)[0][:, :6])


# ------------------------------------------------------------------------------------------------ Llama loading
def _hf_llama(tmp_path, **overrides):
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   rms_norm_eps=1e-6, tie_word_embeddings=False, **overrides)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # move every parameter off its init value (norm gains from 1 too), so no slip can hide
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    return hf


def test_llama_logits_match_hugging_face(tmp_path):
    hf = _hf_llama(tmp_path, rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
    ours = CausalLM.from_pretrained(tmp_path).eval()
    c = ours.config
    assert (c.norm, c.mlp, c.pos_emb, c.n_kv_heads, c.rope_theta, c.tie_weights, c.bias) == \
        ("rmsnorm", "swiglu", "rope", 2, 5000.0, False, False)
    idx = torch.randint(0, 61, (2, 32))
    with torch.no_grad():
        ref = hf(idx).logits
        got, _ = ours(idx)
    assert (got - ref).abs().max().item() < 1e-4
    with torch.no_grad():  # and generation with the cache follows HF's greedy decoding
        ours_gen = ours.generate(idx[:, :4], 8, temperature=0.0)
        hf_gen = hf.generate(idx[:, :4], max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours_gen, hf_gen)


@pytest.mark.parametrize("overrides, phrase", [
    (dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}), "rope scaling 'linear'"),
    (dict(attention_bias=True), "attention_bias=true"),
    (dict(mlp_bias=True), "mlp_bias=true"),
    (dict(hidden_act="gelu"), "hidden_act 'gelu'"),
    (dict(head_dim=16), "head_dim 16"),
])
def test_llama_configs_minilm_cannot_represent_are_refused(tmp_path, overrides, phrase):
    _hf_llama(tmp_path, **overrides)
    with pytest.raises(ValueError, match=phrase):
        CausalLM.from_pretrained(tmp_path)


def test_a_tied_llama_loads_and_gpt2_dirs_still_go_to_the_gpt2_loader(tmp_path):
    cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=16,
                                   tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "llama")
    ours = CausalLM.from_pretrained(tmp_path / "llama").eval()
    assert ours.lm_head.weight is ours.backbone.tok_emb.weight and ours.config.n_kv_heads == 1
    idx = torch.randint(0, 61, (1, 16))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    with pytest.raises(ValueError, match="expected a GPT-2 checkpoint"):
        CausalLM.from_pretrained(tmp_path / "other")


# ------------------------------------------------------------------------------------------------------ AdamW
def test_adamw_matches_torch_over_100_steps_with_two_groups():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    twin = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    twin.load_state_dict(model.state_dict())

    def groups(m):
        return [{"params": [p for p in m.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                {"params": [p for p in m.parameters() if p.dim() < 2], "weight_decay": 0.0, "lr": 3e-3}]

    ours = AdamW(groups(model), lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref = torch.optim.AdamW(groups(twin), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    for step in range(100):
        x, y = torch.randn(32, 8), torch.randn(32, 4)
        for m, opt in ((model, ours), (twin, ref)):
            for group in opt.param_groups[:1]:
                group["lr"] = 1e-2 * (1 - step / 100)  # a schedule changes lr between steps, as train.py does
            F.mse_loss(m(x), y).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert (a - b).abs().max().item() < 1e-6
    state = ours.state_dict()  # same state names: our state loads into torch's optimizer
    fresh = torch.optim.AdamW(groups(twin), lr=1e-2)
    fresh.load_state_dict(state)
    assert set(fresh.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_adamw_step_is_torch_adamw_on_one_tensor():
    p = torch.randn(5, requires_grad=True)
    q = p.detach().clone().requires_grad_(True)
    m, v = torch.zeros(5), torch.zeros(5)
    ref = torch.optim.AdamW([q], lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.5)
    for t in range(1, 4):
        g = torch.randn(5)
        adamw_step(p.data, g, m, v, t, 0.1, 0.8, 0.9, 1e-6, 0.5)
        q.grad = g.clone()
        ref.step()
    torch.testing.assert_close(p.data, q.data, atol=1e-7, rtol=1e-6)


def test_adamw_refuses_what_it_leaves_out_and_configure_optimizer_selects_it():
    with pytest.raises(ValueError, match="amsgrad"):
        AdamW([torch.zeros(2, requires_grad=True)], amsgrad=True)
    model = CausalLM(ModelConfig(**SMALL, **LLAMA))
    opt = configure_optimizer(model, 1e-3, 0.1, impl="minilm")
    assert isinstance(opt, AdamW) and [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))  # every parameter in exactly one group
    with pytest.raises(ValueError, match="optimizer must be 'torch' or 'minilm'"):
        configure_optimizer(model, 1e-3, 0.1, impl="sgd")


# ------------------------------------------------------------------------------------------------------ train.py
def test_stop_and_resume_is_exact_with_the_llama_options_and_the_handwritten_adamw(tmp_path):
    from test_train import FAST, _train, make_char_data, metrics

    from minilm.checkpoint import load_checkpoint

    make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(tmp_path / "data"), "--max-iters", "8", "--eval-interval", "4", "--seed", "3",
                   "--norm", "rmsnorm", "--mlp", "swiglu", "--pos-emb", "rope", "--n-kv-heads", "1",
                   "--optimizer", "minilm"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(args + ["--out-dir", str(straight)])[0] == 0
    assert _train(args + ["--out-dir", str(split), "--stop-after", "3"])[0] == 0
    rc, out = _train(args + ["--out-dir", str(split), "--resume"])
    assert rc == 0 and "at step 3" in out
    assert metrics(straight) == metrics(split)
    ta, meta = load_checkpoint(straight / "ckpt.pt")
    tb, _ = load_checkpoint(split / "ckpt.pt")
    assert meta["model_config"]["pos_emb"] == "rope" and "backbone.pos_emb.weight" not in ta["model"]
    for name, value in ta["model"].items():
        assert torch.equal(value, tb["model"][name]), name


def test_a_checkpoint_saved_before_the_options_existed_resumes(tmp_path):
    from test_train import FAST, _train, make_char_data

    from minilm.checkpoint import load_checkpoint, save_checkpoint

    make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(tmp_path / "data"), "--max-iters", "6", "--eval-interval", "3",
                   "--out-dir", str(tmp_path / "run")]
    assert _train(args + ["--stop-after", "3"])[0] == 0
    tensors, meta = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    for name in ("norm", "mlp", "pos_emb", "rope_theta", "n_kv_heads"):  # what an older minilm wrote
        del meta["model_config"][name]
    save_checkpoint(tmp_path / "run" / "ckpt.pt", tensors, meta)
    rc, out = _train(args + ["--resume"])
    assert rc == 0 and "at step 3" in out


def test_the_llama_preset_builds_the_four_changes():
    import train

    settings, model = train.PRESETS["shakespeare-char-llama"]
    assert settings == {**train.PRESETS["shakespeare-char"][0], "out_dir": "out/shakespeare-char-llama"}
    c = ModelConfig(**{**model, "vocab_size": 65})
    assert (c.norm, c.mlp, c.pos_emb, c.n_kv_heads, c.d_ff) == ("rmsnorm", "swiglu", "rope", 2, 384)
