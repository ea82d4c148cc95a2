"""Bad inputs to every script (issue 8): train.py, finetune.py, `python -m minilm.generate`, data/*/prepare.py.

One table; each case runs the script (main(argv) in this process, or a subprocess where the real command line is
the point) and checks: exit code != 0, stderr is exactly one non-empty line holding the expected phrase, no
traceback, and every file that existed under the test's folder (data, checkpoints, a previous run) is byte-for-byte
unchanged, with no new files.

"Not writable --out-dir": this runs as root in CI, and root ignores permission bits, so chmod cannot make a folder
unwritable here. The case that always runs is an --out-dir that cannot be created (its parent is a file); the
chmod case runs only as a non-root user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
from minilm.checkpoint import save_checkpoint
from minilm.config import ModelConfig
from minilm.data import write_tokens
from minilm.generate import main as generate_main
from minilm.model import MaskedLM
from minilm.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n") * 30
FAST = ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--eval-iters", "1",
        "--warmup-iters", "1", "--samples", "0", "--max-iters", "2"]
N_TRAIN = int(len(TEXT) * 0.9)  # tokens of train.bin (uint16: 2 bytes each); the rest is val.bin
N_VAL = len(TEXT) - N_TRAIN
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_FINETUNE = (ROOT / "finetune.py").is_file()


class CreatesMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", ROOT / "data" / name / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _finetune_main(argv):
    import finetune

    return finetune.main(argv)


MAINS = {"train": train.main, "generate": generate_main, "finetune": _finetune_main,
         **{f"prepare:{n}": (lambda argv, n=n: _script(n)(argv)) for n in ("shakespeare_char", "imdb", "sst2")}}
COMMANDS = {"train": [str(ROOT / "train.py")]}  # the real command line (python -m minilm.generate: test_train.py)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A char dataset and a finished 2-step run, made once; each case works on its own copy."""
    base = tmp_path_factory.mktemp("template")
    tok = CharTokenizer.train(TEXT)
    write_tokens(base / "data", {"train": np.array(tok.encode(TEXT[:N_TRAIN])),
                                 "val": np.array(tok.encode(TEXT[N_TRAIN:]))}, tok)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with redirect_stdout(io.StringIO()):
            assert train.main(FAST + ["--data", str(base / "data"), "--out-dir", str(base / "run")]) == 0
    finally:
        torch.set_num_threads(before)
    return base


@pytest.fixture
def w(template, tmp_path):
    """The world a case sees: data/ (good), run/ (a finished train.py run + a note), out/ (empty but for a note),
    a_file (a plain file), and paths for whatever the case builds."""
    shutil.copytree(template / "data", tmp_path / "data")
    shutil.copytree(template / "run", tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("my notes about this run\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me\n")
    (tmp_path / "a_file").write_text("not a folder\n")
    return SimpleNamespace(tmp=tmp_path, data=tmp_path / "data", run=tmp_path / "run", out=tmp_path / "out",
                           file=tmp_path / "a_file")


def T(w, *extra, out=None):
    """train.py arguments: the fast tiny settings on the good data into w.out (or `out`), plus `extra`."""
    return FAST + ["--data", str(w.data), "--out-dir", str(out or w.out), *extra]


# ---- builders of bad inputs ---------------------------------------------------------------------------------------
def bad_data(w, train_ids=None, val_ids=None, specials=()):
    tok = CharTokenizer.train(TEXT, special_tokens=specials)
    ids = np.array(tok.encode(TEXT[:2000]))
    write_tokens(w.tmp / "bad_data", {"train": ids if train_ids is None else train_ids,
                                      "val": ids[:500] if val_ids is None else val_ids}, tok)
    return w.tmp / "bad_data"


def damage(path: Path, how: str):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "pad":
        path.write_bytes(data + b"\x00\x00\x00\x00")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4000))


def malicious(path: Path, marker: Path):
    torch.save({"format": "minilm-checkpoint", "version": 1, "meta": "{}", "tensors": {"x": CreatesMarker(marker)}},
               path)


def mlm_checkpoint(w) -> Path:
    tok = CharTokenizer.train(TEXT, special_tokens=("pad", "mask", "cls", "sep"))
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_seq_len=32, d_model=32, n_heads=2, n_layers=1, causal=False)
    path = w.tmp / "mlm.pt"
    save_checkpoint(path, {"model": MaskedLM(cfg).state_dict()},
                    {"kind": "mlm", "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()})
    return path


def tsv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def ft(w, *extra, train=None, dev=None, init=None):
    good = [f"a fine film\t1", f"a dull film\t0", f"warm and funny\t1", f"tedious\t0"]
    train = train or tsv(w.tmp / "train.tsv", "sentence\tlabel", good)
    dev = dev or tsv(w.tmp / "dev.tsv", "sentence\tlabel", good)
    return ["--preset", "tiny", "--device", "cpu", "--dtype", "float32", "--compile", "off", "--init",
            str(init or w.run), "--train", str(train), "--dev", str(dev), "--out-dir", str(w.out), *extra]


def sst2_folder(w, header="sentence\tlabel") -> Path:
    folder = w.tmp / "sst2_raw"
    folder.mkdir()
    tsv(folder / "train.tsv", header, ["a fine film \t1", "a dull film \t0"])
    tsv(folder / "dev.tsv", header, ["warm \t1"])
    tsv(folder / "test.tsv", "index\tsentence", ["0\ttedious "])
    return folder


def text_file(w, text: str, name="source.txt") -> Path:
    (w.tmp / name).write_text(text)
    return w.tmp / name


def read_only_out(w) -> Path:
    os.chmod(w.out, 0o500)
    return w.out


# ---- the table: (id, script, argv builder, phrase expected in the one stderr line, how to run) --------------------
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
needs_non_root = pytest.mark.skipif(IS_ROOT, reason="root ignores permission bits: chmod cannot make a folder "
                                                     "unwritable (the out-dir-under-a-file case covers creation)")
needs_finetune = pytest.mark.skipif(not HAS_FINETUNE, reason="finetune.py not written yet")
C = pytest.param
CASES = [
    # train.py: flags
    C("train", lambda w: T(w, "--bogus"), "unrecognized arguments: --bogus", "subprocess", id="train-unknown-flag"),
    C("train", lambda w: T(w, "--preset", "huge"), "invalid choice: 'huge'", "inprocess", id="train-unknown-preset"),
    C("train", lambda w: T(w, "--arch", "rnn"), "invalid choice: 'rnn'", "inprocess", id="train-unknown-arch"),
    C("train", lambda w: T(w, "--arch", "lstm", "--objective", "mlm", "--data",
                           str(bad_data(w, specials=("pad", "mask", "cls", "sep")))),
      "--arch lstm is a causal LM (it reads left to right), so it trains with --objective clm only", "inprocess",
      id="train-recurrent-mlm"),
    C("train", lambda w: T(w, "--lr", "-0.1"), "--lr must be > 0", "inprocess", id="train-negative-lr"),
    C("train", lambda w: T(w, "--batch-size", "0"), "--batch-size must be a positive integer", "inprocess",
      id="train-zero-batch"),
    C("train", lambda w: T(w, "--max-iters", "abc"), "invalid int value: 'abc'", "inprocess", id="train-non-integer"),
    C("train", lambda w: T(w, "--warmup-iters", "50"), "--warmup-iters must be in [0, max_iters=2]", "inprocess",
      id="train-warmup-longer-than-run"),
    C("train", lambda w: T(w, "--mask-prob", "1.5"), "--mask-prob must be in (0, 1)", "inprocess",
      id="train-mask-prob"),
    C("train", lambda w: T(w, "--d-model", "30", "--n-heads", "4"), "d_model (30) must be divisible by n_heads (4)",
      "inprocess", id="train-d-model-not-divisible"),
    C("train", lambda w: T(w, "--vocab-size", "99"), "--vocab-size 99 differs from the dataset's", "inprocess",
      id="train-vocab-size-flag"),
    C("train", lambda w: T(w, "--objective", "mlm", "--causal", "true", "--data",
                           str(bad_data(w, specials=("pad", "mask", "cls", "sep")))),
      "--objective mlm needs --causal False", "inprocess", id="train-mlm-causal"),
    C("train", lambda w: T(w, "--objective", "mlm"), "--objective mlm needs a tokenizer with a <mask> token",
      "inprocess", id="train-mlm-without-mask-token"),
    C("train", lambda w: T(w, "--resume", "--overwrite", out=w.run), "contradict", "inprocess",
      id="train-resume-and-overwrite"),
    # train.py: the Llama options (ModelConfig.norm, mlp, pos_emb, n_kv_heads)
    C("train", lambda w: T(w, "--n-kv-heads", "3"), "n_kv_heads (3) must divide n_heads (2)", "inprocess",
      id="train-kv-heads-not-dividing"),
    C("train", lambda w: T(w, "--pos-emb", "rope", "--d-model", "30", "--n-heads", "2"), "needs an even d_head",
      "inprocess", id="train-rope-odd-head-dim"),
    C("train", lambda w: T(w, "--norm", "batchnorm"), "norm must be 'layernorm' or 'rmsnorm'", "inprocess",
      id="train-unknown-norm"),
    C("train", lambda w: T(w, "--optimizer", "sgd"), "invalid choice: 'sgd'", "inprocess", id="train-unknown-optimizer"),
    # train.py: devices
    C("train", lambda w: T(w, "--device", "tpu"), "unknown device 'tpu'", "inprocess", id="train-unknown-device"),
    C("train", lambda w: T(w, "--device", "cuda"), "CUDA is not available", "inprocess", id="train-cuda-without-cuda",
      marks=no_cuda),
    C("train", lambda w: T(w, "--dtype", "float16"), "float16 is not supported on CPU", "inprocess",
      id="train-fp16-on-cpu"),
    # train.py: data
    C("train", lambda w: T(w, "--data", str(w.tmp / "nowhere")), "meta.json not found: prepare the dataset first",
      "inprocess", id="train-missing-data-dir"),
    C("train", lambda w: T(w, "--data", str(bad_data(w, train_ids=np.array([], dtype=np.int64))),),
      "train.bin is empty (0 tokens)", "inprocess", id="train-empty-train-bin"),
    C("train", lambda w: (damage(w.data / "train.bin", "truncate"), T(w))[1],
      f"train.bin has {2 * N_TRAIN // 3} bytes but meta.json says {N_TRAIN} tokens", "inprocess",
      id="train-truncated-bin"),
    C("train", lambda w: (damage(w.data / "val.bin", "pad"), T(w))[1], f"val.bin has {2 * N_VAL + 4} bytes but meta.json says {N_VAL} tokens",
      "inprocess", id="train-bin-size-mismatch"),
    C("train", lambda w: (damage(w.data / "train.bin", "empty"), T(w))[1], "train.bin has 0 bytes", "inprocess",
      id="train-bin-emptied"),
    C("train", lambda w: T(w, "--max-seq-len", "4096"), "too few for one window of --max-seq-len 4096", "inprocess",
      id="train-block-longer-than-split"),
    # train.py: checkpoints and --resume
    C("train", lambda w: T(w, "--resume"), "--resume: no checkpoint at", "inprocess", id="train-resume-no-checkpoint"),
    C("train", lambda w: T(w, out=w.run), "already holds a run", "inprocess", id="train-existing-run-no-resume"),
    C("train", lambda w: (damage(w.run / "ckpt.pt", "random"), T(w, "--resume", out=w.run))[1],
      "is not a PyTorch checkpoint or is corrupt", "inprocess", id="train-corrupt-checkpoint"),
    C("train", lambda w: (damage(w.run / "ckpt.pt", "truncate"), T(w, "--resume", out=w.run))[1],
      "corrupt", "inprocess", id="train-truncated-checkpoint"),
    C("train", lambda w: T(w, "--resume", "--d-model", "64", out=w.run),
      "model_config.d_model is 32 in the checkpoint but 64 now", "inprocess", id="train-other-architecture"),
    C("train", lambda w: T(w, "--resume", "--arch", "gru", out=w.run),
      "model_config.arch is 'transformer' in the checkpoint but 'gru' now", "inprocess", id="train-resume-as-rnn"),
    C("train", lambda w: (torch.save({"a": 1}, w.run / "ckpt.pt"), T(w, "--resume", out=w.run))[1],
      "is not a minilm checkpoint", "inprocess", id="train-non-minilm-file"),
    C("train", lambda w: (malicious(w.run / "ckpt.pt", w.tmp / "PWNED"), T(w, "--resume", out=w.run))[1],
      "could run code when loaded (unsafe), so it was refused", "inprocess", id="train-malicious-pickle"),
    # train.py: --out-dir
    C("train", lambda w: T(w, out=w.file), "is a file, not a directory", "inprocess", id="train-out-dir-is-a-file"),
    C("train", lambda w: T(w, out=w.file / "sub"), "cannot create --out-dir", "inprocess",
      id="train-out-dir-cannot-be-created"),
    C("train", lambda w: T(w, out=read_only_out(w)), "is not writable", "inprocess", id="train-out-dir-read-only",
      marks=needs_non_root),
    # python -m minilm.generate
    C("generate", lambda w: ["--ckpt", str(w.run), "--prompt", "naïve €uro"], "character 'ï' at position 2 is not in",
      "inprocess", id="generate-unencodable-prompt"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--prompt", "All:" * 10], "the prompt is 40 tokens but the model's "
      "context is 32", "inprocess", id="generate-prompt-longer-than-context"),
    C("generate", lambda w: ["--ckpt", str(w.tmp / "none.pt")], "no checkpoint at", "inprocess",
      id="generate-missing-checkpoint"),
    C("generate", lambda w: (damage(w.run / "best.pt", "truncate"), ["--ckpt", str(w.run / "best.pt")])[1],
      "corrupt", "inprocess", id="generate-truncated-checkpoint"),
    C("generate", lambda w: (malicious(w.run / "best.pt", w.tmp / "PWNED"), ["--ckpt", str(w.run)])[1], "unsafe",
      "inprocess", id="generate-malicious-pickle"),
    C("generate", lambda w: ["--ckpt", str(mlm_checkpoint(w))], "generation needs a causal LM", "inprocess",
      id="generate-masked-lm"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--prompt-file", str(w.tmp / "none.txt")], "does not exist",
      "inprocess", id="generate-missing-prompt-file"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--temperature", "-1"], "temperature must be >= 0", "inprocess",
      id="generate-negative-temperature"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--top-p", "1.5"], "top_p must be in (0, 1]", "inprocess",
      id="generate-top-p"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--device", "tpu"], "unknown device", "inprocess",
      id="generate-unknown-device"),
    C("generate", lambda w: ["--ckpt", str(w.run), "--bogus"], "unrecognized arguments", "inprocess",
      id="generate-unknown-flag"),
    # data/*/prepare.py
    C("prepare:shakespeare_char", lambda w: ["--source", str(w.tmp / "none.txt"), "--out-dir", str(w.out)],
      "--source", "inprocess", id="prepare-char-missing-source"),
    C("prepare:shakespeare_char", lambda w: ["--source", str(text_file(w, "")), "--out-dir", str(w.out)],
      "has 0 characters: too little text", "inprocess", id="prepare-char-empty-source"),
    C("prepare:shakespeare_char", lambda w: ["--source", str(text_file(w, "hello")), "--val-fraction", "1.5",
                                             "--out-dir", str(w.out)], "--val-fraction must be in (0, 1)",
      "inprocess", id="prepare-char-val-fraction"),
    C("prepare:shakespeare_char", lambda w: ["--bogus", "--out-dir", str(w.out)], "unrecognized arguments",
      "inprocess", id="prepare-char-unknown-flag"),
    C("prepare:sst2", lambda w: ["--source", str(sst2_folder(w, "text\tlabel")), "--out-dir", str(w.out)],
      "no column 'sentence'", "inprocess", id="prepare-sst2-wrong-columns"),
    C("prepare:sst2", lambda w: ["--source", str(w.tmp / "nowhere"), "--out-dir", str(w.out)],
      "neither a folder with the TSVs nor a zip file", "inprocess", id="prepare-sst2-missing-source"),
    C("prepare:imdb", lambda w: ["--source", str(text_file(w, "")), "--out-dir", str(w.out)], "0 reviews",
      "inprocess", id="prepare-imdb-empty-source"),
    C("prepare:imdb", lambda w: ["--source", str(text_file(w, "a fine film\n<br />\nbad\n")), "--out-dir",
                                 str(w.out)], "review 2 is empty after cleaning", "inprocess",
      id="prepare-imdb-empty-review"),
    # finetune.py
    C("finetune", lambda w: ft(w, train=tsv(w.tmp / "t.tsv", "text\tlabel", ["a fine film\t1"])),
      "no column 'sentence'", "inprocess", id="finetune-wrong-columns", marks=needs_finetune),
    C("finetune", lambda w: ft(w, "--labels", "0,1", train=tsv(w.tmp / "t.tsv", "sentence\tlabel",
                                                              ["a fine film\t1", "meh\t2"])),
      "line 3: label '2' is not in the label set ['0', '1']", "inprocess", id="finetune-unknown-label",
      marks=needs_finetune),
    C("finetune", lambda w: ft(w, init=w.data / "train.bin"), "is not a PyTorch checkpoint or is corrupt",
      "inprocess", id="finetune-init-not-a-checkpoint", marks=needs_finetune),
    C("finetune", lambda w: ft(w, init=w.tmp / "nowhere"), "no such directory or file", "inprocess",
      id="finetune-init-missing", marks=needs_finetune),
    C("finetune", lambda w: (malicious(w.run / "best.pt", w.tmp / "PWNED"), ft(w))[1], "unsafe", "inprocess",
      id="finetune-init-malicious", marks=needs_finetune),
    C("finetune", lambda w: ft(w, "--resume"), "--resume: no checkpoint at", "inprocess",
      id="finetune-resume-no-checkpoint", marks=needs_finetune),
    C("finetune", lambda w: ft(w, "--lr", "-1"), "--lr > 0", "inprocess", id="finetune-negative-lr",
      marks=needs_finetune),
    C("finetune", lambda w: ["--predict", "a fine film"], "need --ckpt", "inprocess",
      id="finetune-predict-without-ckpt", marks=needs_finetune),
    C("finetune", lambda w: ft(w, "--bogus"), "unrecognized arguments", "inprocess", id="finetune-unknown-flag",
      marks=needs_finetune),
]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_case(script: str, argv: list[str], via: str, cwd: Path) -> tuple[int, str]:
    if via == "subprocess":
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, *COMMANDS[script], *argv], capture_output=True, text=True, env=env,
                              cwd=cwd, timeout=120)
        return proc.returncode, proc.stderr
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        try:
            rc = MAINS[script](argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, err.getvalue()


@pytest.mark.parametrize("script, build, phrase, via", CASES)
def test_bad_input_gives_one_clear_line_and_touches_nothing(w, script, build, phrase, via):
    argv = build(w)  # builds the bad input (if any) first
    before = snapshot(w.tmp)
    torch.set_num_threads(1)
    try:
        rc, err = run_case(script, argv, via, w.tmp)
    finally:
        if w.out.exists():
            os.chmod(w.out, 0o755)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"exit code {rc}; stderr: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and err.strip() == lines[0], f"expected one line on stderr, got:\n{err}"
    assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    assert snapshot(w.tmp) == before, "files changed or appeared"
    assert not (w.tmp / "PWNED").exists()


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25
    assert {c.values[0] for c in CASES} >= {"train", "generate", "prepare:shakespeare_char", "prepare:sst2",
                                             "prepare:imdb", "finetune"}
