"""Issue 8, reliability: a run survives `kill -9` at any moment and resumes to exactly the run it would have been;
checkpoint writes are atomic; a checkpoint that would run code is refused; a diverging run stops before it can save
NaN weights. train.py and finetune.py.

- kill -9: the real scripts in subprocesses, killed (SIGKILL) during their first checkpoint write, during a later
  ckpt.pt write (spotted by polling for its temp file `.ckpt.pt.*.tmp`) and at seeded random moments; after each
  kill the files on disk must load (or be absent), and the run finished with --resume must equal an uninterrupted
  run bit for bit (CPU, fp32, one thread).
- crash at every write: in-process, the k-th atomic write of a run fails halfway (disk full) for every k; the
  previous file must be untouched and --resume must again reproduce the uninterrupted run exactly.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from minilm import checkpoint, files
from minilm.checkpoint import load_checkpoint, save_checkpoint
from minilm.config import ModelConfig
from minilm.data import write_tokens
from minilm.generate import main as generate_main
from minilm.model import MaskedLM
from minilm.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 30
FAST = ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--eval-iters", "1",
        "--warmup-iters", "2", "--log-interval", "1", "--samples", "0"]
VOLATILE = ("time_s", "tokens_per_s")
RUN_FILES = ("ckpt.pt", "best.pt")


class CreatesMarker:
    """A pickle payload that creates a file when unpickled: stands in for any code a malicious file could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses get OMP_NUM_THREADS=1: same float sums, so results are bit-equal
    yield
    torch.set_num_threads(before)


def env1() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def make_char_data(path: Path) -> Path:
    tok = CharTokenizer.train(TEXT)
    n = int(len(TEXT) * 0.9)
    write_tokens(path, {"train": np.array(tok.encode(TEXT[:n])), "val": np.array(tok.encode(TEXT[n:]))}, tok)
    return path


POS = ["a gorgeous witty film", "warm and funny", "a delight", "great acting and a fine script", "moving and wise"]
NEG = ["a dull mess", "boring and flat", "a waste of time", "tedious and silly", "bad acting and a thin plot"]


def make_finetune_inputs(path: Path) -> dict:
    """A labelled train/dev TSV and a (random-weight) masked-LM checkpoint to --init from, all in `path`."""
    path.mkdir(parents=True, exist_ok=True)
    rows = [(t, "1") for t in POS] * 4 + [(t, "0") for t in NEG] * 4
    random.Random(0).shuffle(rows)
    (path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (path / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows[:10]))
    tok = CharTokenizer.train("".join(POS + NEG), special_tokens=("pad", "mask", "cls", "sep"))
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_seq_len=32, d_model=32, n_heads=2, n_layers=2, causal=False)
    torch.manual_seed(0)
    save_checkpoint(path / "init.pt", {"model": MaskedLM(cfg).state_dict()},
                    {"kind": "mlm", "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()})
    return {"train": path / "train.tsv", "dev": path / "dev.tsv", "init": path / "init.pt"}


def finetune_module():
    if not (ROOT / "finetune.py").is_file():
        pytest.skip("finetune.py not written yet")
    import finetune

    return finetune


def ft_args(inputs: dict) -> list[str]:
    return ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--init",
            str(inputs["init"]), "--train", str(inputs["train"]), "--dev", str(inputs["dev"]), "--batch-size", "4",
            "--epochs", "2", "--eval-interval", "3", "--log-interval", "1", "--seed", "5"]


def metrics(out_dir: Path) -> list[dict]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def quiet(main, argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_on_disk_state_is_sane(out_dir: Path) -> int | None:
    """Every checkpoint present loads (weights finite); metrics.jsonl parses. Returns ckpt.pt's step (None if absent)."""
    step = None
    for name in RUN_FILES:
        if (out_dir / name).exists():
            tensors, meta = load_checkpoint(out_dir / name)  # raises on a torn file
            assert all(bool(torch.isfinite(v).all()) for v in tensors["model"].values())
            if name == "ckpt.pt":
                step = meta["step"]
    if (out_dir / "metrics.jsonl").exists():
        [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return step


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = load_checkpoint(a)[0]["model"], load_checkpoint(b)[0]["model"]
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name


# ------------------------------------------------------------------------------------------------ kill -9
def kill_when(proc: subprocess.Popen, out_dir: Path, trigger: str, rng: random.Random) -> dict:
    """Poll out_dir until `trigger` happens, then SIGKILL. Triggers: "first-write" (the run's very first checkpoint
    temp file), "ckpt-write" (the second `.ckpt.pt.*.tmp` of this process: mid-write of a real update), "random"
    (a seeded random delay of 0-1 s after this process has replaced ckpt.pt twice, i.e. made progress)."""
    tmp = re.compile(r"^\.(ckpt|best)\.pt\..+\.tmp$")
    old = set(os.listdir(out_dir)) if out_dir.is_dir() else set()
    ckpt = out_dir / "ckpt.pt"
    mtime0 = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    seen, deadline, replaced = [], None, 0
    while proc.poll() is None:
        try:
            names = os.listdir(out_dir)
        except FileNotFoundError:
            continue
        if trigger == "random":
            if deadline is None:
                try:
                    mtime = ckpt.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                if mtime != mtime0:
                    mtime0, replaced = mtime, replaced + 1
                    if replaced == 2:
                        deadline = time.monotonic() + rng.uniform(0.0, 1.0)
            elif time.monotonic() >= deadline:
                break
            continue
        for n in names:
            if tmp.match(n) and n not in old and n not in seen and (trigger == "first-write" or n[1:5] == "ckpt"):
                seen.append(n)
        if (trigger == "first-write" and seen) or (trigger == "ckpt-write" and len(seen) >= 2):
            break
    else:
        raise AssertionError(f"the run ended (exit {proc.returncode}) before the kill point {trigger!r}: "
                             f"{proc.stderr.read() if proc.stderr else ''}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    leftovers = [n for n in os.listdir(out_dir) if tmp.match(n)]
    return {"trigger": trigger, "torn_temp_files": leftovers, "returncode": proc.returncode}


def kill_and_resume(script: str, args: list[str], out_dir: Path, plan: list[str], seed: int) -> list[dict]:
    """Run `script args --out-dir out_dir`, kill it per `plan`, restart (--resume when ckpt.pt exists) after each
    kill, then run it to the end. Returns what each kill hit."""
    rng = random.Random(seed)
    report = []
    for trigger in plan + ["finish"]:
        resume = ["--resume"] if (out_dir / "ckpt.pt").exists() else []
        cmd = [sys.executable, str(ROOT / script), *args, "--out-dir", str(out_dir), *resume]
        proc = subprocess.Popen(cmd, env=env1(), cwd=out_dir.parent, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if trigger == "finish":
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            break
        t0 = time.monotonic()
        hit = kill_when(proc, out_dir, trigger, rng)
        hit["after_s"] = round(time.monotonic() - t0, 1)
        proc.stderr.close()
        assert hit["returncode"] == -signal.SIGKILL
        hit["ckpt_step_after_kill"] = assert_on_disk_state_is_sane(out_dir)
        hit["resumed"] = bool(resume)
        report.append(hit)
    print(f"\n{script} kill points: {report}")  # visible with pytest -s
    return report


@pytest.mark.slow  # four script starts: ~15 s on an idle 2-core machine, much more when it is shared
def test_train_survives_kill_9_and_resumes_bit_identically(tmp_path):
    data = make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(data), "--max-iters", "60", "--eval-interval", "3", "--seed", "11"]
    assert quiet(train.main, args + ["--out-dir", str(tmp_path / "ref")])[0] == 0  # uninterrupted reference
    out = tmp_path / "killed"
    report = kill_and_resume("train.py", args, out, ["first-write", "ckpt-write", "random"], seed=0)
    assert report[0]["ckpt_step_after_kill"] in (None, 0)  # killed while the first checkpoint was being written
    assert report[1]["torn_temp_files"], "the kill did not land inside a ckpt.pt write"
    assert report[2]["resumed"] and report[2]["ckpt_step_after_kill"] > 0
    assert metrics(out) == metrics(tmp_path / "ref")  # every loss of the whole run, bit for bit
    assert_same_weights(out / "ckpt.pt", tmp_path / "ref" / "ckpt.pt")
    assert_same_weights(out / "best.pt", tmp_path / "ref" / "best.pt")
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # --resume cleared the torn temp files


@pytest.mark.slow
def test_finetune_survives_kill_9_and_resumes_bit_identically(tmp_path):
    finetune = finetune_module()
    args = ft_args(make_finetune_inputs(tmp_path / "inputs")) + ["--epochs", "6"]
    assert quiet(finetune.main, args + ["--out-dir", str(tmp_path / "ref")])[0] == 0
    out = tmp_path / "killed"
    report = kill_and_resume("finetune.py", args, out, ["ckpt-write", "random"], seed=1)  # first-write: train.py's
    assert report[0]["torn_temp_files"] and report[1]["resumed"] and report[1]["ckpt_step_after_kill"] > 0
    assert metrics(out) == metrics(tmp_path / "ref")
    assert_same_weights(out / "ckpt.pt", tmp_path / "ref" / "ckpt.pt")
    assert_same_weights(out / "best.pt", tmp_path / "ref" / "best.pt")


# ------------------------------------------------------------------------------------------------ crash at every write
class FailingWrites:
    """Wraps minilm.files.atomic_write (behind save_checkpoint, atomic_write_text/bytes, the plots): the
    `fail_at`-th write puts half its bytes into the temp file and then fails as a full disk would."""

    def __init__(self, fail_at: int | None):
        self.real, self.fail_at, self.calls, self.failed = files.atomic_write, fail_at, 0, None

    def __call__(self, path, write):
        self.calls += 1
        if self.calls != self.fail_at:
            return self.real(path, write)
        target = Path(path)
        before = target.read_bytes() if target.exists() else None

        def half_then_disk_full(f):
            buf = io.BytesIO()
            write(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        try:
            self.real(path, half_then_disk_full)
        except OSError:
            self.failed = target.name
            after = target.read_bytes() if target.exists() else None
            assert after == before, f"a failed write changed {target.name}"
            assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")], "temp file left behind"
            raise
        raise AssertionError("the injected failure did not propagate")


def _cheap_plot(records, path):  # the real figure costs ~0.5 s per evaluation; the write it makes is what matters
    files.atomic_write_bytes(path, b"\x89PNG fake")


def crash_at_every_write(monkeypatch, tmp_path, main, args, max_writes=40):
    monkeypatch.setattr(train, "plot_loss_curves", _cheap_plot)
    counter = FailingWrites(None)
    monkeypatch.setattr(files, "atomic_write", counter)
    assert quiet(main, args + ["--out-dir", str(tmp_path / "ref")])[0] == 0
    n_writes = counter.calls
    assert 6 <= n_writes <= max_writes
    hits = []
    for k in range(1, n_writes + 1):
        out = tmp_path / f"crash{k}"
        failing = FailingWrites(k)
        monkeypatch.setattr(files, "atomic_write", failing)
        rc, _, err = quiet(main, args + ["--out-dir", str(out)])
        assert rc == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1, err
        step = assert_on_disk_state_is_sane(out)
        hits.append((k, failing.failed, step))
        monkeypatch.setattr(files, "atomic_write", FailingWrites(None))
        resume = ["--resume"] if (out / "ckpt.pt").exists() else ["--overwrite"]
        rc, _, err = quiet(main, args + ["--out-dir", str(out)] + resume)
        assert rc == 0, err
        assert metrics(out) == metrics(tmp_path / "ref"), f"write {k} ({failing.failed}) lost or changed records"
        assert_same_weights(out / "ckpt.pt", tmp_path / "ref" / "ckpt.pt")
    return hits


def test_train_crash_at_every_write_keeps_old_files_and_resumes_exactly(tmp_path, monkeypatch):
    """Includes a crash between ckpt.pt and metrics.jsonl: metrics.jsonl is written first, so a resumed run never
    misses the records between the last two evaluations."""
    data = make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(data), "--max-iters", "4", "--eval-interval", "2", "--seed", "4"]
    hits = crash_at_every_write(monkeypatch, tmp_path, train.main, args)
    assert {"ckpt.pt", "best.pt", "metrics.jsonl", "loss.png"} <= {name for _, name, _ in hits}


def test_finetune_crash_at_every_write_keeps_old_files_and_resumes_exactly(tmp_path, monkeypatch):
    finetune = finetune_module()
    monkeypatch.setattr(finetune, "plot_confusion_matrix", lambda cm, names, path, **kw: _cheap_plot(None, path))
    args = ft_args(make_finetune_inputs(tmp_path / "inputs")) + ["--epochs", "1"]
    crash_at_every_write(monkeypatch, tmp_path, finetune.main, args)


# ------------------------------------------------------------------------------------------------ safe loading
def _malicious_checkpoint(path: Path, marker: Path) -> None:
    pickle.loads(pickle.dumps(CreatesMarker(marker)))  # the payload is live: plain pickle runs it...
    assert marker.exists()
    marker.unlink()
    torch.save({"format": "minilm-checkpoint", "version": 1, "meta": "{}", "tensors": {"x": CreatesMarker(marker)}},
               path)


def test_malicious_checkpoint_is_refused_by_train_resume_and_generate(tmp_path):
    data = make_char_data(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "PWNED"
    _malicious_checkpoint(out / "ckpt.pt", marker)
    rc, _, err = quiet(train.main, FAST + ["--data", str(data), "--max-iters", "4", "--out-dir", str(out), "--resume"])
    assert rc == 1 and "unsafe" in err and "refused" in err and len(err.strip().splitlines()) == 1
    rc, _, err = quiet(generate_main, ["--ckpt", str(out / "ckpt.pt"), "--max-new-tokens", "3"])
    assert rc == 1 and "unsafe" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()  # ...but nothing ran here
    assert os.listdir(out) == ["ckpt.pt"]


def test_malicious_init_is_refused_by_finetune(tmp_path):
    finetune = finetune_module()
    inputs = make_finetune_inputs(tmp_path / "inputs")
    marker = tmp_path / "PWNED"
    _malicious_checkpoint(inputs["init"], marker)
    rc, _, err = quiet(finetune.main, ft_args(inputs) + ["--out-dir", str(tmp_path / "out")])
    assert rc == 1 and "unsafe" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ divergence
def _nan_run(tmp_path, extra, name="run"):
    data = make_char_data(tmp_path / "data")
    args = FAST + ["--data", str(data), "--max-iters", "12", "--out-dir", str(tmp_path / name)] + extra
    return quiet(train.main, args)


def _assert_finite_checkpoints_at(out: Path, step: int) -> None:
    for name in RUN_FILES:
        tensors, meta = load_checkpoint(out / name)
        assert all(bool(torch.isfinite(v).all()) for v in tensors["model"].values()), name
    assert load_checkpoint(out / "ckpt.pt")[1]["step"] == step


def test_nan_training_loss_stops_with_step_and_last_good_checkpoint(tmp_path):
    # lr 1e30 without clipping: step 0 moves the weights to ~1e27, step 1's loss is NaN
    rc, _, err = _nan_run(tmp_path, ["--lr", "1e30", "--min-lr", "0", "--grad-clip", "0", "--eval-interval", "4"])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(r"training loss is nan at step 1: training diverged\. The last good checkpoint is .*ckpt\.pt "
                     r"\(step 0\)", err), err
    _assert_finite_checkpoints_at(tmp_path / "run", 0)


def test_nan_at_an_evaluation_stops_before_saving(tmp_path):
    """Logs only at the end, evaluations every 2 steps: the first place the NaN shows is an evaluation, which used to
    overwrite ckpt.pt with NaN weights (and name that file as the last good one)."""
    rc, out, err = _nan_run(tmp_path, ["--lr", "1e30", "--min-lr", "0", "--grad-clip", "0", "--eval-interval", "2",
                                       "--log-interval", "100"])
    assert rc != 0 and len(err.strip().splitlines()) == 1
    assert "val loss nan" in out  # the evaluation did see it
    assert re.search(r"evaluation loss is nan .* at step 2: training diverged\. The last good checkpoint is "
                     r".*ckpt\.pt \(step 0\)", err), err
    _assert_finite_checkpoints_at(tmp_path / "run", 0)
    assert [r["step"] for r in metrics(tmp_path / "run") if "val_loss" in r] == [0]


def test_nan_after_resume_names_the_resumed_checkpoint(tmp_path):
    assert _nan_run(tmp_path, ["--stop-after", "4", "--eval-interval", "4"])[0] == 0
    rc, _, err = _nan_run(tmp_path, ["--resume", "--lr", "1e30", "--min-lr", "0", "--grad-clip", "0",
                                     "--eval-interval", "4"])
    assert rc != 0 and re.search(r"at step 5: .*ckpt\.pt \(step 4\)", err), err
    _assert_finite_checkpoints_at(tmp_path / "run", 4)


def test_finetune_nan_stops_before_saving(tmp_path):
    finetune = finetune_module()
    args = ft_args(make_finetune_inputs(tmp_path / "inputs")) + ["--lr", "1e30", "--grad-clip", "0", "--warmup",
                                                                 "0", "--log-interval", "100"]
    rc, _, err = quiet(finetune.main, args + ["--out-dir", str(tmp_path / "out")])
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "diverged" in err and "checkpoint" in err, err
    out = tmp_path / "out"
    for name in RUN_FILES:
        if (out / name).exists():
            tensors = load_checkpoint(out / name)[0]
            assert all(bool(torch.isfinite(v).all()) for v in tensors["model"].values()), name
