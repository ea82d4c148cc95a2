"""train.py end to end on the tiny preset (issue 4): the files a run writes, a falling loss, exact resume for the
causal and the masked objective, bf16 autocast on the CPU, --help, the samples at the end, `python -m
minilm.generate` on the checkpoint, and determinism. The optimizer groups and the LR schedule are tested in
tests/test_training.py. Datasets are built here from a string (no ../shared needed); everything runs in-process
(main(argv)) except the two checks of the real command lines."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from minilm.checkpoint import load_checkpoint, load_model, save_checkpoint
from minilm.config import ModelConfig
from minilm.data import write_tokens
from minilm.generate import main as generate_main
from minilm.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n"
        "First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.\n\n") * 25  # ~6,000 chars
# Fast and exact: fp32, no compile, CPU, a short schedule, few eval batches, a loss record at every step.
FAST = ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--eval-iters", "2",
        "--warmup-iters", "2", "--log-interval", "1", "--samples", "0"]
VOLATILE = ("time_s", "tokens_per_s")  # wall-clock fields: everything else in metrics.jsonl must repeat exactly


def make_char_data(path: Path, specials=()) -> CharTokenizer:
    """A char-level dataset from TEXT (90/10 split) in `path`; `specials` adds e.g. pad/mask/cls/sep for MLM."""
    tok = CharTokenizer.train(TEXT, special_tokens=specials)
    n = int(len(TEXT) * 0.9)
    write_tokens(path, {"train": np.array(tok.encode(TEXT[:n])), "val": np.array(tok.encode(TEXT[n:]))}, tok)
    return tok


def metrics(out_dir: Path) -> list[dict]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def _train(argv) -> tuple[int, str]:
    """train.main(argv) in this process: (exit code, what it printed)."""
    with redirect_stdout(io.StringIO()) as buf:
        rc = train.main(argv)
    return rc, buf.getvalue()


def env1() -> dict:
    """Subprocess environment: one thread (the machine is shared; also makes CPU float sums repeat exactly)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished 20-step run with samples at the end, shared by the tests that only read its outputs."""
    base = tmp_path_factory.mktemp("run")
    make_char_data(base / "data")
    out = base / "out"
    argv = FAST + ["--data", str(base / "data"), "--out-dir", str(out), "--max-iters", "20", "--eval-interval", "10",
                   "--samples", "2", "--sample-tokens", "30", "--seed", "7"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc, stdout = _train(argv)
    finally:
        torch.set_num_threads(before)
    return {"rc": rc, "out": out, "stdout": stdout, "base": base}


def test_run_writes_checkpoints_metrics_and_plot_and_the_loss_falls(run):
    assert run["rc"] == 0
    out = run["out"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "ckpt.pt", "loss.png", "metrics.jsonl"]
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    import matplotlib.image

    height, width = matplotlib.image.imread(out / "loss.png").shape[:2]
    assert width >= 700 and width * 4 == height * 7  # a real image of the 7 x 4 inch figure
    records = metrics(out)
    evals = [r for r in records if "val_loss" in r]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert [r["step"] for r in steps] == list(range(20))
    assert evals[0]["val_loss"] == pytest.approx(np.log(len(set(TEXT))), abs=0.3)  # ~ln V at initialisation
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.4
    assert np.mean([r["loss"] for r in steps[-5:]]) < np.mean([r["loss"] for r in steps[:5]]) - 0.3
    tensors, meta = load_checkpoint(out / "ckpt.pt")
    assert meta["step"] == 20 and meta["kind"] == "clm" and set(tensors) == {"model", "optimizer", "scaler", "rng"}
    best_tensors, best_meta = load_checkpoint(out / "best.pt")
    assert set(best_tensors) == {"model"}  # best.pt is weights only
    assert best_meta["val_loss"] == min(r["val_loss"] for r in evals) == meta["loop_state"]["best_val_loss"]
    model, tok, _ = load_model(out)
    assert model.config.d_model == 32 and model.config.max_seq_len == 32 and tok.vocab_size == len(set(TEXT))


def test_samples_print_at_the_end(run):
    out = run["stdout"]
    assert "done: 20 steps" in out and "val loss over the whole val split" in out
    tail = out.split("--- sample 1 ")[1]
    sample1, sample2 = tail.split("--- sample 2 ")
    body1 = sample1.split("\n", 1)[1].rstrip("\n")
    body2 = sample2.split("\n", 1)[1].rstrip("\n")
    vocab = set(TEXT)
    for body in (body1, body2):
        assert len(body) == 1 + 30  # the "\n" it starts from + --sample-tokens 30 characters
        assert set(body) <= vocab
    assert body1 != body2  # two independent samples


def test_help_lists_every_flag_and_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    flags = ["--preset"] + [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(train.TrainSettings)]
    flags += [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(ModelConfig)]
    missing = [f for f in flags if f not in text]
    assert not missing, f"--help does not mention {missing}"
    for preset in train.PRESETS:
        assert preset in text


@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_stop_and_resume_gives_bit_identical_losses(tmp_path, objective):
    """N steps straight vs --stop-after K (K not on an eval step) then --resume to N: every loss in metrics.jsonl and
    every weight of the final checkpoint are bit-identical (CPU, fp32). MLM also covers the masking generator."""
    specials = ("pad", "mask", "cls", "sep") if objective == "mlm" else ()
    make_char_data(tmp_path / "data", specials)
    args = FAST + ["--data", str(tmp_path / "data"), "--objective", objective, "--max-iters", "12",
                   "--eval-interval", "6", "--seed", "3"]
    if objective == "mlm":
        args += ["--dropout", "0.1"]  # exercises the global torch RNG state in the checkpoint as well
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(args + ["--out-dir", str(straight)])[0] == 0
    assert _train(args + ["--out-dir", str(split), "--stop-after", "5"])[0] == 0
    assert load_checkpoint(split / "ckpt.pt")[1]["step"] == 5
    rc, out = _train(args + ["--out-dir", str(split), "--resume"])
    assert rc == 0 and "resuming" in out and "at step 5" in out
    a, b = metrics(straight), metrics(split)
    assert len([r for r in a if "loss" in r]) == 12
    assert a == b  # exact float equality of every loss, val loss and lr
    ta, ma = load_checkpoint(straight / "ckpt.pt")
    tb, mb = load_checkpoint(split / "ckpt.pt")
    assert ma["step"] == mb["step"] == 12 and ma["kind"] == objective
    for name, value in ta["model"].items():
        assert torch.equal(value, tb["model"][name]), name


def test_a_checkpoint_from_before_loop_state_still_resumes_exactly(tmp_path):
    """Checkpoints written before train.py saved `loop_state` kept step and best_val_loss at the top of meta: resuming
    one gives the same run as resuming today's format."""
    make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(tmp_path / "data"), "--max-iters", "8", "--eval-interval", "4", "--seed", "5"]
    new, old = tmp_path / "new", tmp_path / "old"
    assert _train(args + ["--out-dir", str(new), "--stop-after", "3"])[0] == 0
    shutil.copytree(new, old)
    tensors, meta = load_checkpoint(old / "ckpt.pt")
    loop_state = meta.pop("loop_state")
    save_checkpoint(old / "ckpt.pt", tensors, {**meta, "best_val_loss": loop_state["best_val_loss"]})
    for out in (new, old):
        rc, printed = _train(args + ["--out-dir", str(out), "--resume"])
        assert rc == 0 and "at step 3" in printed
    assert metrics(new) == metrics(old)
    ta, tb = load_checkpoint(new / "ckpt.pt")[0], load_checkpoint(old / "ckpt.pt")[0]
    assert all(torch.equal(value, tb["model"][name]) for name, value in ta["model"].items())


def test_bf16_autocast_on_cpu_trains_and_tracks_fp32(tmp_path):
    make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(tmp_path / "data"), "--max-iters", "10", "--eval-interval", "10"]
    rc, out = _train(args + ["--out-dir", str(tmp_path / "bf16"), "--dtype", "bfloat16"])
    assert rc == 0 and "cpu, bfloat16" in out  # autocast really was on
    assert _train(args + ["--out-dir", str(tmp_path / "fp32")])[0] == 0
    bf16 = [r["loss"] for r in metrics(tmp_path / "bf16") if "loss" in r]
    fp32 = [r["loss"] for r in metrics(tmp_path / "fp32") if "loss" in r]
    assert bf16[-1] < bf16[0] - 0.3  # it trains
    assert bf16 != fp32  # bf16 matmuls did change the numbers...
    np.testing.assert_allclose(bf16, fp32, rtol=0, atol=0.05)  # ...by about bf16's 3 significant digits


def test_same_seed_same_run_different_seed_different_run(tmp_path):
    make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(tmp_path / "data"), "--max-iters", "8", "--eval-interval", "8", "--samples", "1",
                   "--sample-tokens", "40"]
    outs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        rc, out = _train(args + ["--out-dir", str(tmp_path / name), "--seed", seed])
        assert rc == 0
        outs[name] = (metrics(tmp_path / name), out.split("--- sample 1 ")[1])
    assert outs["a"] == outs["b"]  # identical loss curves and identical samples
    assert outs["a"][0] != outs["c"][0] and outs["a"][1] != outs["c"][1]


def test_generate_on_the_checkpoint_is_reproducible_with_seed(run, capsys):
    ckpt = str(run["out"])  # a run directory: generate picks best.pt

    def sample(seed, prompt="All:"):
        assert generate_main(["--ckpt", ckpt, "--prompt", prompt, "--max-new-tokens", "25", "--seed", str(seed),
                              "--num-samples", "2"]) == 0
        return capsys.readouterr().out

    first, again, other = sample(0), sample(0), sample(1)
    assert first == again and first != other
    texts = [part.split("\n", 1)[1].rstrip("\n") for part in first.split("--- sample ")[1:]]
    assert len(texts) == 2 and all(t.startswith("All:") and len(t) == 4 + 25 for t in texts)
    # the real command line, once: python -m minilm.generate
    cmd = [sys.executable, "-m", "minilm.generate", "--ckpt", ckpt, "--prompt", "All:", "--max-new-tokens", "25",
           "--seed", "0", "--num-samples", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env1(), cwd=run["base"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == first and proc.stderr == ""
