"""Tests for minilm/training.py: optimizer groups, schedules, devices / dtypes / AMP, evaluation, seeding, MFU."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minilm import training
from minilm.training import (
    autocast_context, clip_grad_norm, configure_optimizer, evaluate, format_eta, get_lr, get_lr_linear,
    make_grad_scaler, maybe_compile, mfu, param_groups_summary, peak_flops, resolve_device, resolve_dtype,
    rng_state, set_rng_state, set_seed, split_decay_params,
)


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> Linear -> tied lm_head, with dropout; forward(idx, targets) -> (logits, loss)."""

    def __init__(self, V=11, D=8, dropout=0.5):
        super().__init__()
        self.tok_emb = nn.Embedding(V, D)
        self.norm = nn.LayerNorm(D)
        self.proj = nn.Linear(D, D)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(D, V, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied (Press & Wolf 2017)
        self.seen_training = []

    def forward(self, idx, targets=None):
        self.seen_training.append(self.training)
        x = self.drop(self.proj(self.norm(self.tok_emb(idx))))
        logits = self.lm_head(x)
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def test_optimizer_groups_cover_every_parameter_once_with_tied_weights():
    model = TinyLM()
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    unique = {id(p): p for p in model.parameters()}
    assert len(ids) == len(set(ids)) == len(unique)  # every parameter exactly once; the tied weight once
    assert set(ids) == set(unique)
    assert {id(p) for p in decay["params"]} == {id(p) for p in unique.values() if p.dim() >= 2}
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    # the tied embedding appears once, under its first name
    names = [n for n, _ in split_decay_params(model)[0]]
    assert names == ["tok_emb.weight", "proj.weight"]
    summary = param_groups_summary(opt)
    assert [s["tensors"] for s in summary] == [2, 3]  # emb + proj.weight | norm.weight, norm.bias, proj.bias
    assert sum(s["params"] for s in summary) == sum(p.numel() for p in model.parameters())
    assert not opt.defaults.get("fused")  # fused is CUDA-only


def test_frozen_parameters_are_left_out():
    model = TinyLM()
    model.norm.weight.requires_grad_(False)
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert all(p is not model.norm.weight for g in opt.param_groups for p in g["params"])


def test_adamw_matches_eq_6_2_to_6_5_by_hand():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3, 4))
    model = nn.Module()
    model.w = w
    lr, wd, (b1, b2), eps = 0.1, 0.2, (0.9, 0.95), 1e-8
    opt = configure_optimizer(model, lr=lr, weight_decay=wd, betas=(b1, b2), eps=eps)
    theta, m, v = w.detach().clone(), torch.zeros(3, 4), torch.zeros(3, 4)
    for t in (1, 2, 3):
        g = torch.randn(3, 4)
        w.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g  # Eq. 6.2
        v = b2 * v + (1 - b2) * g * g  # Eq. 6.3
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # Eq. 6.4
        theta = theta - lr * (m_hat / (v_hat.sqrt() + eps) + wd * theta)  # Eq. 6.5
        torch.testing.assert_close(w.detach(), theta, rtol=1e-5, atol=1e-6)


def test_causal_lm_groups_if_model_exists():
    model_mod = pytest.importorskip("minilm.model")
    from minilm.config import ModelConfig

    model = model_mod.CausalLM(ModelConfig(vocab_size=17, max_seq_len=8, d_model=16, n_heads=2, n_layers=1))
    opt = configure_optimizer(model, lr=1e-3, weight_decay=0.1)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len({id(p) for p in model.parameters()})
    assert all(p.dim() >= 2 for p in opt.param_groups[0]["params"])


def test_cosine_schedule_shape_and_exact_values():
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    lrs = [get_lr(s, **kw) for s in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.5)
    assert lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)  # peak reached at the end of warmup
    assert np.allclose(np.diff(lrs[:10]), 0.1)  # linear warmup
    assert lrs[60] == pytest.approx(0.55)  # halfway through the cosine: min + (lr - min) / 2
    assert lrs[35] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert all(a >= b for a, b in zip(lrs[10:111], lrs[11:111]))  # monotone decay
    assert lrs[110] == pytest.approx(0.1) and set(lrs[110:]) == {0.1}  # constant min_lr afterwards
    assert max(lrs) == pytest.approx(1.0)
    assert get_lr(0, 1.0, 0.0, 0, 100) == 1.0  # no warmup


def test_linear_schedule_values():
    kw = dict(lr=2.0, min_lr=0.0, warmup_iters=4, max_iters=24)
    assert get_lr_linear(0, **kw) == pytest.approx(0.5)
    assert get_lr_linear(3, **kw) == pytest.approx(2.0)
    assert get_lr_linear(14, **kw) == pytest.approx(1.0)
    assert get_lr_linear(24, **kw) == 0.0 and get_lr_linear(99, **kw) == 0.0


@pytest.mark.parametrize("bad", [dict(warmup_iters=20, max_iters=10), dict(warmup_iters=-1, max_iters=10)])
def test_schedule_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="warmup_iters"):
        get_lr(0, lr=1.0, min_lr=0.0, **bad)
    with pytest.raises(ValueError, match="min_lr"):
        get_lr(0, lr=1.0, min_lr=2.0, warmup_iters=0, max_iters=10)


def test_resolve_device():
    auto = resolve_device("auto")
    assert auto == ("cuda" if torch.cuda.is_available() else auto)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unsupported device"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        assert auto in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if training.cpu_supports_bf16() else torch.float32)
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype("auto", "mps") == torch.float32
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", "cpu")


def test_cpu_bf16_detection_matches_cpuinfo():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert training.cpu_supports_bf16()


def test_autocast_bf16_on_cpu_gives_bf16_matmuls():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast_context("cpu", torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    with autocast_context("cpu", torch.float32):
        assert (a @ b).dtype == torch.float32


def test_grad_scaler_only_for_fp16_cuda():
    assert not make_grad_scaler("cpu", torch.bfloat16).is_enabled()
    assert not make_grad_scaler("cpu", torch.float32).is_enabled()
    if torch.cuda.is_available():
        assert make_grad_scaler("cuda", torch.float16).is_enabled()
        assert not make_grad_scaler("cuda", torch.bfloat16).is_enabled()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile imports deprecated torch.jit APIs
def test_maybe_compile():
    model = TinyLM()
    assert maybe_compile(model, "off") is model
    assert maybe_compile(model, "auto", "cpu") is model
    assert maybe_compile(model, "on") is not model  # compiled lazily: nothing runs until the first call
    with pytest.raises(ValueError, match="auto, on or off"):
        maybe_compile(model, "yes")


def test_evaluate_mean_loss_eval_mode_and_restores_mode():
    model = TinyLM()
    losses = iter([1.0, 2.0, 4.0])

    class Fixed(nn.Module):
        def forward(self, x):
            self.mode = self.training
            return x, torch.tensor(next(losses))

    fixed = Fixed().train()
    assert evaluate(fixed, lambda: (torch.zeros(1),), 3) == pytest.approx(7 / 3)
    assert fixed.training and fixed.mode is False

    model.train()
    batch = (torch.randint(0, 11, (2, 5)), torch.randint(0, 11, (2, 5)))
    loss = evaluate(model, lambda: batch, 2, ctx=autocast_context("cpu", torch.float32))
    assert model.training and model.seen_training == [False, False]
    model.eval()
    with torch.no_grad():
        assert loss == pytest.approx(float(model(*batch)[1]), rel=1e-6)  # dropout off: deterministic
    evaluate(model, lambda: batch, 1)
    assert not model.training  # an eval-mode model stays in eval mode
    with pytest.raises(ValueError):
        evaluate(model, lambda: batch, 0)


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(5)
    set_seed(123)
    state = rng_state({"train": gen})
    assert all(isinstance(t, torch.Tensor) for t in state.values())

    def draw():
        return (torch.rand(3), random.random(), np.random.rand(2), torch.randint(0, 100, (4,), generator=gen),
                random.gauss(0, 1), np.random.randn())

    first = draw()
    set_rng_state(state, {"train": gen})
    second = draw()
    assert torch.equal(first[0], second[0]) and first[1] == second[1] and np.array_equal(first[2], second[2])
    assert torch.equal(first[3], second[3]) and first[4] == second[4] and first[5] == second[5]
    with pytest.raises(ValueError, match="other"):
        set_rng_state(state, {"other": torch.Generator()})


def test_set_seed_reproducible():
    set_seed(7)
    a = (torch.rand(2), random.random(), np.random.rand())
    set_seed(7)
    b = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_clip_grad_norm_is_global():
    p1, p2 = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    p1.grad, p2.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert clip_grad_norm([p1, p2], 0.0) == pytest.approx(5.0)  # measure only
    assert clip_grad_norm([p1, p2], 1.0) == pytest.approx(5.0)  # returns the norm before clipping
    total = torch.cat([p1.grad, p2.grad]).norm()
    assert float(total) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(p1.grad, torch.tensor([0.6, 0.0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,dtype,expected", [
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989e12),
    ("NVIDIA H100 PCIe", torch.bfloat16, 756e12),
    ("NVIDIA H200", torch.bfloat16, 989e12),
    ("NVIDIA A100-SXM4-80GB", torch.float16, 312e12),
    ("NVIDIA A100-PCIE-40GB", torch.float32, 19.5e12),
    ("NVIDIA A10", torch.bfloat16, 125e12),
    ("NVIDIA L4", torch.bfloat16, 121e12),
    ("NVIDIA L40S", torch.bfloat16, 362e12),
    ("Tesla V100-SXM2-16GB", torch.float16, 125e12),
    ("Tesla V100-SXM2-16GB", torch.bfloat16, None),
    ("Tesla T4", torch.float16, 65e12),
    ("Mystery GPU 9000", torch.bfloat16, None),
])
def test_peak_flops_table(monkeypatch, name, dtype, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: name)
    assert peak_flops("cuda", dtype) == expected


def test_peak_flops_cpu_probe_is_cached():
    first = peak_flops("cpu", torch.float32)
    assert 1e8 < first < 1e15
    assert peak_flops("cpu", torch.float32) == first


def test_mfu_and_formatting():
    assert mfu(6e6, 1e5, 1e12) == pytest.approx(0.6)
    assert mfu(6e6, 1e5, None) is None
    assert [format_eta(s) for s in (0, 42.4, 185, 3725, 2 * 86400 + 3 * 3600 + 59)] == \
        ["0s", "42s", "3m05s", "1h02m05s", "2d03h"]
    assert format_eta(float("inf")) == "?" and format_eta(None) == "?"
