"""GPU paths (skipped without CUDA): bf16 autocast, fp16 with a GradScaler (overflowing steps are skipped and the scale
backs off), torch.compile against eager, fused AdamW against the for-loop AdamW, and tiny train.py runs on cuda."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import train  # noqa: E402
from minilm.checkpoint import load_checkpoint, load_model  # noqa: E402
from minilm.config import ModelConfig  # noqa: E402
from minilm.data import write_tokens  # noqa: E402
from minilm.model import CausalLM  # noqa: E402
from minilm.tokenizer import CharTokenizer  # noqa: E402
from minilm.training import autocast_context, configure_optimizer, make_grad_scaler, maybe_compile  # noqa: E402

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 30
CFG = ModelConfig(vocab_size=37, max_seq_len=16, d_model=32, n_heads=2, n_layers=2)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, CFG.vocab_size, (4, CFG.max_seq_len + 1), generator=g).cuda()
    return idx[:, :-1], idx[:, 1:]


def test_bf16_autocast_runs_matmuls_in_bf16_and_keeps_the_loss_close():
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    a, b = torch.randn(8, 8, device="cuda"), torch.randn(8, 8, device="cuda")
    with autocast_context("cuda", torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    torch.manual_seed(0)
    model = CausalLM(CFG).cuda()
    x, y = batch()
    _, fp32 = model(x, y)
    with autocast_context("cuda", torch.bfloat16):
        _, bf16 = model(x, y)
    assert torch.isfinite(bf16) and abs(float(bf16) - float(fp32)) < 0.05


def test_fp16_grad_scaler_skips_overflowing_steps_and_backs_off():
    torch.manual_seed(0)
    model = CausalLM(CFG).cuda()
    opt = configure_optimizer(model, 1e-3, 0.0, device_type="cuda")
    scaler = make_grad_scaler("cuda", torch.float16)
    assert scaler.is_enabled()
    x, y = batch()

    def backward():
        with autocast_context("cuda", torch.float16):
            _, loss = model(x, y)
        scaler.scale(loss).backward()

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    backward()
    next(model.parameters()).grad.view(-1)[0] = float("inf")  # an fp16 overflow in one gradient
    scale = scaler.get_scale()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the loop's order: unscale, clip, step
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())  # the step was skipped
    assert scaler.get_scale() == scale * 0.5  # and the scale backed off (Eq. 6.8)
    backward()
    scaler.step(opt)
    scaler.update()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert changed and all(torch.isfinite(p).all() for p in model.parameters())  # a clean step does update


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = CausalLM(CFG).cuda().eval()
    compiled = maybe_compile(model, "auto", "cuda")  # auto means on for CUDA
    assert compiled is not model
    x, y = batch()
    with torch.no_grad():
        eager_logits, eager_loss = model(x, y)
        comp_logits, comp_loss = compiled(x, y)
    torch.testing.assert_close(comp_logits, eager_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(comp_loss, eager_loss, rtol=1e-4, atol=1e-4)


def test_fused_adamw_matches_the_reference_adamw():
    torch.manual_seed(0)
    fused_model = CausalLM(CFG).cuda()
    ref_model = CausalLM(CFG).cuda()
    ref_model.load_state_dict(fused_model.state_dict())
    fused = configure_optimizer(fused_model, 1e-3, 0.1, device_type="cuda")
    assert fused.defaults.get("fused") is True
    ref = configure_optimizer(ref_model, 1e-3, 0.1, device_type="cpu")  # the for-loop implementation
    assert not ref.defaults.get("fused")
    for seed in range(3):
        for model, opt in ((fused_model, fused), (ref_model, ref)):
            _, loss = model(*batch(seed))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (name, a), (_, b) in zip(fused_model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture
def char_data(tmp_path):
    tok = CharTokenizer.train(TEXT)
    n = int(len(TEXT) * 0.9)
    write_tokens(tmp_path / "data", {"train": np.array(tok.encode(TEXT[:n])), "val": np.array(tok.encode(TEXT[n:]))},
                 tok)
    return tmp_path / "data"


@pytest.mark.parametrize("dtype, compile_", [("auto", "off"), ("float16", "off"), ("auto", "on")])
def test_tiny_train_run_on_cuda(char_data, tmp_path, dtype, compile_):
    out = tmp_path / "out"
    argv = ["--preset", "tiny", "--data", str(char_data), "--out-dir", str(out), "--device", "cuda", "--dtype", dtype,
            "--compile", compile_, "--max-iters", "30", "--eval-interval", "15", "--eval-iters", "2",
            "--log-interval", "1", "--warmup-iters", "2", "--samples", "1", "--sample-tokens", "20"]
    with redirect_stdout(io.StringIO()) as buf:
        assert train.main(argv) == 0
    text = buf.getvalue()
    assert "| cuda," in text and "--- sample 1" in text
    if dtype == "float16":
        assert "float16" in text
    if compile_ == "on":
        assert "compiled" in text
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    tensors, meta = load_checkpoint(out / "ckpt.pt")  # saved from the uncompiled model: plain keys, CPU-loadable
    assert meta["step"] == 30 and not any(k.startswith("_orig_mod") for k in tensors["model"])
    model, _, _ = load_model(out, "cpu")
    assert next(model.parameters()).device.type == "cpu"
