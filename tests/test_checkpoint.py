"""Tests for minilm/checkpoint.py: round trip, atomic writes, and refusing broken, foreign or malicious files."""

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from minilm import checkpoint, files
from minilm.checkpoint import CHECKPOINT_NAME, check_compatible, load_checkpoint, save_checkpoint
from minilm.files import atomic_write_bytes, atomic_write_text
from minilm.training import configure_optimizer, make_grad_scaler, rng_state, set_rng_state


class CreatesMarker:
    """A pickle payload that creates a file when unpickled: stands in for any code a malicious file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _trained_state():
    model = nn.Sequential(nn.Embedding(7, 4), nn.LayerNorm(4), nn.Linear(4, 7))
    opt = configure_optimizer(model, lr=1e-2, weight_decay=0.1)
    loss = model(torch.tensor([[1, 2, 3]])).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    tensors = {"model": model.state_dict(), "optimizer": opt.state_dict(),
               "scaler": make_grad_scaler("cpu", torch.float32).state_dict(),
               "rng": rng_state({"train": gen}), "extra": {"bf16": torch.randn(3).bfloat16(), "ints": [1, 2]}}
    meta = {"step": 1, "best_val_loss": 1.5, "config": {"d_model": 4, "betas": [0.9, 0.95]}, "name": "é"}
    return tensors, meta


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        bits = lambda t: t.detach().reshape(-1).contiguous().view(torch.uint8)  # noqa: E731 (NaN == NaN bitwise)
        assert torch.equal(bits(a), bits(b))
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_is_bit_identical(tmp_path):
    tensors, meta = _trained_state()
    path = save_checkpoint(tmp_path / "run" / "ckpt.pt", tensors, meta)
    assert os.listdir(tmp_path / "run") == ["ckpt.pt"]  # no temp file left behind
    loaded, loaded_meta = load_checkpoint(path)
    _assert_same(tensors, loaded)
    assert loaded_meta == meta


def test_rng_state_survives_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(11)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state({"g": gen})}, {})
    first = (torch.rand(3), np.random.rand(), torch.randint(0, 9, (5,), generator=gen))
    tensors, _ = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(tensors["rng"], {"g": gen})
    second = (torch.rand(3), np.random.rand(), torch.randint(0, 9, (5,), generator=gen))
    assert torch.equal(first[0], second[0]) and first[1] == second[1] and torch.equal(first[2], second[2])


def test_directory_paths(tmp_path):
    save_checkpoint(tmp_path, {"w": torch.ones(2)}, {"step": 3})
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert load_checkpoint(tmp_path)[1] == {"step": 3}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME):
        load_checkpoint(empty)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage0", "garbage1", "garbage2", "flipped"])
def test_truncated_or_corrupt_file_gives_clear_error(tmp_path, damage):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100)}, {"step": 1})
    data = open(path, "rb").read()
    rng = np.random.default_rng(int(damage[-1]) if damage[-1].isdigit() else 0)
    flipped = bytearray(data)
    flipped[len(data) // 2: len(data) // 2 + 64] = rng.bytes(64)  # damage in the middle: the zip index is intact
    new = {"truncate": data[: len(data) // 2], "empty": b"", "flipped": bytes(flipped)}.get(damage, rng.bytes(500))
    open(path, "wb").write(new)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)


def test_foreign_files_are_not_minilm_checkpoints(tmp_path):
    raw = tmp_path / "pytorch_model.bin"
    torch.save(nn.Linear(2, 2).state_dict(), raw)  # a bare state_dict, as Hugging Face ships
    with pytest.raises(ValueError, match="not a minilm checkpoint.*state_dict"):
        load_checkpoint(raw)
    safetensors = pytest.importorskip("safetensors.torch")
    st = tmp_path / "model.safetensors"
    safetensors.save_file({"w": torch.ones(2)}, str(st))
    with pytest.raises(ValueError, match="not"):
        load_checkpoint(st)
    old = tmp_path / "old.pt"
    torch.save({"format": "minilm-checkpoint", "version": 99, "meta": "{}", "tensors": {}}, old)
    with pytest.raises(ValueError, match="version 99"):
        load_checkpoint(old)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    # Check that the payload is live: plain pickle does run it.
    pickle.loads(pickle.dumps(CreatesMarker(marker)))
    assert marker.exists()
    marker.unlink()
    evil = tmp_path / "evil.pt"
    payload = {"format": "minilm-checkpoint", "version": 1, "meta": "{}", "tensors": {"x": CreatesMarker(marker)}}
    torch.save(payload, evil)
    with pytest.raises(ValueError, match="unsafe") as info:
        load_checkpoint(evil)
    assert "not loadable" in str(info.value)
    assert not marker.exists()


def test_save_rejects_unsafe_contents_without_leaving_files(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(1)}, {"bad": {1, 2}})
    with pytest.raises(ValueError, match=r"\['opt'\]\['arr'\].*ndarray"):
        save_checkpoint(tmp_path / "c.pt", {"opt": {"arr": np.zeros(2)}}, {})
    assert os.listdir(tmp_path) == []


def test_failed_checkpoint_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 1})
    before = path.read_bytes()

    def torch_save_that_dies(obj, f):
        f.write(b"PK\x03\x04 half a zip")  # writes part of the file, then the process "crashes"
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", torch_save_that_dies)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"w": torch.ones(3)}, {"step": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert meta == {"step": 1} and torch.equal(tensors["w"], torch.zeros(3))


def test_atomic_write_text_and_bytes(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "metrics.json"
    atomic_write_text(path, "old ✓")
    assert path.read_text(encoding="utf-8") == "old ✓"

    def fsync_fails(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(files.os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_text(path, "new, written but never synced")
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"\x00" * 10)
    assert path.read_text(encoding="utf-8") == "old ✓"
    assert os.listdir(path.parent) == ["metrics.json"]
    monkeypatch.undo()
    atomic_write_bytes(path, b"\x01\x02")
    assert path.read_bytes() == b"\x01\x02"


def test_check_compatible_names_the_field():
    meta = {"model_config": {"d_model": 128, "n_layers": 4}, "tokenizer": {"kind": "char"}, "betas": [0.9, 0.95]}
    check_compatible(meta, {"model_config": {"d_model": 128}, "betas": (0.9, 0.95)})  # tuple == JSON list
    with pytest.raises(ValueError, match=r"model_config\.d_model is 128 in the checkpoint but 256 now"):
        check_compatible(meta, {"model_config": {"d_model": 256, "n_layers": 4}})
    with pytest.raises(ValueError, match="dataset is missing"):
        check_compatible(meta, {"dataset": "shakespeare"})
    with pytest.raises(ValueError, match=r"tokenizer\.kind.*n_layers"):
        check_compatible(meta, {"tokenizer": {"kind": "bpe"}, "model_config": {"n_layers": 2}})


def test_resumed_run_continues_exactly(tmp_path):
    """Train 4 steps straight vs 2 steps, checkpoint, fresh objects, load, 2 more steps: bit-identical weights."""
    model_mod = pytest.importorskip("minilm.model")
    from minilm.config import ModelConfig
    from minilm.training import autocast_context, get_lr

    cfg = ModelConfig(vocab_size=13, max_seq_len=8, d_model=16, n_heads=2, n_layers=1, dropout=0.1)

    def fresh():
        torch.manual_seed(0)
        model = model_mod.CausalLM(cfg)
        return model, configure_optimizer(model, lr=1e-2, weight_decay=0.1), torch.Generator().manual_seed(1)

    def step(model, opt, gen, it):
        for group in opt.param_groups:
            group["lr"] = get_lr(it, 1e-2, 1e-3, 1, 4)
        idx = torch.randint(0, 13, (2, 9), generator=gen)
        with autocast_context("cpu", torch.bfloat16):
            _, loss = model(idx[:, :-1], idx[:, 1:])  # dropout draws from the global torch RNG
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model, opt, gen = fresh()
    for it in range(4):
        step(model, opt, gen, it)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, gen = fresh()
    for it in range(2):
        step(model, opt, gen, it)
    save_checkpoint(tmp_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "rng": rng_state({"batches": gen})}, {"iter": 2, "model_config": cfg.to_dict()})
    torch.rand(5)  # disturb the global RNG: the resume must not depend on it
    model, opt, gen = fresh()
    tensors, meta = load_checkpoint(tmp_path)
    check_compatible(meta, {"model_config": cfg.to_dict()})
    model.load_state_dict(tensors["model"])
    opt.load_state_dict(tensors["optimizer"])
    set_rng_state(tensors["rng"], {"batches": gen})
    for it in range(meta["iter"], 4):
        step(model, opt, gen, it)
    _assert_same(straight, model.state_dict())


def test_a_checkpoint_older_than_a_config_field_is_compatible_with_its_default():
    """Fields added to ModelConfig later (arch, norm, pos_emb, ...) were their defaults in an older checkpoint."""
    import dataclasses as dc

    from minilm.checkpoint import check_compatible
    from minilm.config import ModelConfig

    now = ModelConfig().to_dict()
    old = {k: v for k, v in now.items() if k not in ("norm", "arch", "n_kv_heads")}
    check_compatible({"model_config": old}, {"model_config": now})  # no error: the defaults are what it meant
    changed = dc.replace(ModelConfig(), norm="rmsnorm").to_dict()
    with pytest.raises(ValueError, match="model_config.norm is 'layernorm' in the checkpoint but 'rmsnorm' now"):
        check_compatible({"model_config": old}, {"model_config": changed})
