"""Grade the classroom exercises in lectures/exercises/: one row per exercise, passed or not.

    python -m minilm.grade                               # the copy in lectures/exercises/ (a student's working copy)
    python -m minilm.grade --impl reference              # minilm itself: every row passes, so the tests are right
    python -m minilm.grade --impl path/to/folder         # a copy of lectures/exercises/ somewhere else
    python -m minilm.grade --impl subs/*/ --csv grades.csv   # a folder of submissions: one summary row each

Each exercise is a function (or a module's `forward`) that a student writes with the same signature as its twin in
minilm/, e.g. lectures/exercises/attention.py::causal_mask for minilm.attention.causal_mask. The tests in
tests/exercises/ take the implementation from `--impl` (or the environment variable MINILM_IMPL) and compare it with
PyTorch built-ins, scikit-learn and hand-computed values, never with minilm, so they also prove minilm right.

Each implementation is tested in a fresh `python -m pytest tests/exercises` subprocess (student code may crash or
loop; a timeout ends it), with this module loaded as a pytest plugin (`-p minilm.classroom.grade --grade-report FILE`) that
writes every test outcome, tagged with its exercise, to a JSON file. Needs a checkout of the repository (the tests
are not installed with the package). `python -m minilm.grade` runs `main` here. Explained in README.md,
"Teaching with minilm".
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from minilm.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]  # the repository root
EXERCISES_DIR = ROOT / "lectures" / "exercises"  # the stubs handed to students
TESTS_DIR = ROOT / "tests" / "exercises"  # the tests that grade any implementation


@dataclass(frozen=True)
class Exercise:
    file: str  # file in lectures/exercises/, named after the minilm module that holds the reference
    name: str  # function or class name, the same in both
    lecture: str  # the notebook lectures/<lecture>.ipynb whose footer links the exercise
    eq: str  # the equations it implements

    @property
    def key(self) -> str:
        """'attention.py::causal_mask': the name used by test markers, the grade table and lecture footers."""
        return f"{self.file}::{self.name}"

    def reference(self):
        """The minilm object this exercise rebuilds (minilm.<module>.<name>)."""
        return getattr(importlib.import_module(f"minilm.{Path(self.file).stem}"), self.name)


EXERCISES = (
    Exercise("bpe.py", "get_pair_counts", "01_tokenizer", "Eq. 1.1"),
    Exercise("bpe.py", "merge", "01_tokenizer", "Eq. 1.2"),
    Exercise("wordpiece.py", "wordpiece_word", "01_tokenizer", "Eq. 1.5"),
    Exercise("data.py", "mask_tokens", "02_data", "Eq. 2.4"),
    Exercise("attention.py", "causal_mask", "03_attention", "Eq. 3.2"),
    Exercise("attention.py", "split_heads", "03_attention", "Eq. 3.6"),
    Exercise("attention.py", "merge_heads", "03_attention", "Eq. 3.6"),
    Exercise("attention.py", "scaled_dot_product_attention", "03_attention", "Eq. 3.1-3.4"),
    Exercise("block.py", "layer_norm", "04_block", "Eq. 4.1"),
    Exercise("block.py", "gelu", "04_block", "Eq. 4.2-4.3"),
    Exercise("block.py", "MLP", "04_block", "Eq. 4.4"),
    Exercise("block.py", "TransformerBlock", "04_block", "Eq. 4.5-4.6"),
    Exercise("model.py", "next_token_loss", "05_model", "Eq. 2.2"),
    Exercise("sampling.py", "top_k_filter", "05_model", "Eq. 5.8"),
    Exercise("sampling.py", "top_p_filter", "05_model", "Eq. 5.9"),
    Exercise("training.py", "get_lr", "06_training", "Eq. 6.6"),
    Exercise("metrics.py", "precision_recall_f1", "07_finetuning", "Eq. 7.3-7.5"),
    Exercise("seq2seq.py", "CrossAttention", "08_encoder_decoder", "Eq. 8.3"),
    Exercise("seq2seq.py", "beam_search_step", "08_encoder_decoder", "Eq. 8.8"),
    Exercise("rnn.py", "lstm_cell", "10_rnn_vs_attention", "Eq. 10.3-10.5"),
    Exercise("rnn.py", "gru_cell", "10_rnn_vs_attention", "Eq. 10.6-10.8"),
    Exercise("block.py", "rms_norm", "09_modern_blocks", "Eq. 9.1"),
    Exercise("block.py", "SwiGLU", "09_modern_blocks", "Eq. 9.2-9.3"),
    Exercise("attention.py", "apply_rope", "09_modern_blocks", "Eq. 9.5-9.6"),
    Exercise("attention.py", "repeat_kv", "09_modern_blocks", "Eq. 9.8"),
    Exercise("optim.py", "adamw_step", "09_modern_blocks", "Eq. 6.2-6.5"),
    Exercise("tagging.py", "align_labels", "11_token_classification", "Eq. 11.2"),
    Exercise("metrics.py", "entity_spans", "11_token_classification", "Eq. 11.4"),
)
BY_KEY = {ex.key: ex for ex in EXERCISES}


# ------------------------------------------------------------------------------------------ loading an implementation
def resolve_impl(impl: str | os.PathLike | None) -> str:
    """'reference', 'exercises' (lectures/exercises/) or the absolute path of a folder holding a copy of it.

    None means the environment variable MINILM_IMPL, or 'reference' when that is unset too.
    """
    impl = str(impl) if impl is not None else os.environ.get("MINILM_IMPL", "reference")
    if impl in ("reference", "exercises"):
        return impl
    path = Path(impl).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--impl {impl!r}: not 'reference', 'exercises' or a folder; "
                         "pass a folder holding a copy of lectures/exercises/")
    return str(path)


def display_name(key: str, impl: str) -> str:
    """Where a student finds the exercise: 'lectures/exercises/attention.py::causal_mask', or under their folder."""
    if impl == "reference":
        ex = BY_KEY[key]
        return f"minilm/{ex.file}::{ex.name}"
    folder = EXERCISES_DIR if impl == "exercises" else Path(impl)
    try:
        folder = folder.relative_to(ROOT)
    except ValueError:
        pass
    return f"{folder.as_posix()}/{key}"


def load(key: str, impl: str = "reference"):
    """The object `key` ('attention.py::causal_mask') names in the implementation `impl` (see resolve_impl)."""
    if key not in BY_KEY:
        raise ValueError(f"unknown exercise {key!r}; known: {', '.join(BY_KEY)}")
    ex = BY_KEY[key]
    impl = resolve_impl(impl)
    if impl == "reference":
        return ex.reference()
    path = (EXERCISES_DIR if impl == "exercises" else Path(impl)) / ex.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: copy {ex.file} from lectures/exercises/ into that folder")
    module = _load_file(str(path.resolve()))
    if not hasattr(module, ex.name):
        raise ValueError(f"{path} defines no {ex.name!r}: restore it from lectures/exercises/{ex.file}")
    return getattr(module, ex.name)


@functools.lru_cache(maxsize=None)
def _load_file(path: str) -> ModuleType:
    # A unique module name per file, so a student's attention.py never shadows minilm.attention or another copy.
    name = f"_minilm_exercise_{hashlib.sha1(path.encode()).hexdigest()[:12]}_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ------------------------------------------------------------------------------------------------ the pytest plugin
def pytest_addoption(parser):
    parser.addoption("--grade-report", metavar="FILE", default=None,
                     help="(minilm.classroom.grade) write each exercise test's outcome to this JSON file")


def pytest_configure(config):
    if config.getoption("grade_report", None):
        config.pluginmanager.register(_Recorder(config.getoption("grade_report")), "minilm-grade-recorder")


class _Recorder:
    """Collects one outcome per exercise test from the user properties that tests/exercises/conftest.py attaches."""

    def __init__(self, path: str):
        self.path = path
        self.rows: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report):
        props = dict(report.user_properties)
        if "exercise" not in props or (report.when != "call" and report.passed):
            return
        outcome = "not attempted" if props.get("not_attempted") else report.outcome
        if report.nodeid in self.rows and self.rows[report.nodeid]["outcome"] != "passed":
            return  # keep the first failure (a teardown error after a failed call adds nothing)
        crash = getattr(report.longrepr, "reprcrash", None)  # the exception line, e.g. "AssertionError: ..."
        lines = (crash.message if crash is not None else str(report.longrepr or "")).strip().splitlines()
        named = [line for line in lines if re.match(r"\w+(Error|Exception)\b", line)]  # "SyntaxError: ..."
        message = (named or lines or [""])[0] if report.failed else ""
        self.rows[report.nodeid] = {"exercise": props["exercise"], "outcome": outcome, "message": message}

    def pytest_sessionfinish(self, session):
        atomic_write_text(self.path, json.dumps(list(self.rows.values())))


# ------------------------------------------------------------------------------------------------------- grading
@dataclass
class Result:
    exercise: Exercise
    passed: int  # tests passed
    total: int  # tests run (skips excluded)
    status: str  # "pass", "FAIL", "not attempted" or "no tests"
    message: str  # the first failure's last line, "" when it passes


def summarize(rows: list[dict]) -> list[Result]:
    """Per-exercise results from the recorder's rows, in the order of EXERCISES."""
    results = []
    for ex in EXERCISES:
        mine = [r for r in rows if r["exercise"] == ex.key and r["outcome"] != "skipped"]
        passed = sum(r["outcome"] == "passed" for r in mine)
        if not mine:
            status = "no tests"
        elif passed == len(mine):
            status = "pass"
        elif all(r["outcome"] == "not attempted" for r in mine):
            status = "not attempted"
        else:
            status = "FAIL"
        message = next((r["message"] for r in mine if r["outcome"] != "passed"), "")
        results.append(Result(ex, passed, len(mine), status, message))
    return results


def grade(impl: str = "exercises", timeout: float = 300.0) -> list[Result]:
    """Run tests/exercises against `impl` in a subprocess and return one Result per exercise.

    Raises ValueError for a bad impl, RuntimeError if pytest could not run, subprocess.TimeoutExpired on a hang.
    """
    impl = resolve_impl(impl)
    if not TESTS_DIR.is_dir():
        raise RuntimeError(f"{TESTS_DIR} not found: grading needs a checkout of the minilm repository")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pytest", str(TESTS_DIR), f"--impl={impl}", "-p", "minilm.classroom.grade",
               f"--grade-report={report}", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
        env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # no third-party plugins: faster, and none needed
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if not report.is_file():
            output = (proc.stdout + proc.stderr)[-4000:]
            raise RuntimeError(f"pytest exited with {proc.returncode} before grading:\n{output}")
        return summarize(json.loads(report.read_text()))


def format_table(results: list[Result], impl: str = "exercises") -> str:
    """The per-exercise score table, then one line per failing exercise saying why."""
    width = max(len(display_name(r.exercise.key, impl)) for r in results)
    lines = [f"{'exercise':<{width}}  {'lecture':<13}  {'equation':<11}  tests  result"]
    for r in results:
        name = display_name(r.exercise.key, impl)
        ex = r.exercise
        lines.append(f"{name:<{width}}  {ex.lecture:<13}  {ex.eq:<11}  {r.passed:>2}/{r.total:<2}  {r.status}")
    n_pass = sum(r.status == "pass" for r in results)
    lines.append(f"score: {n_pass}/{len(results)} exercises pass")
    lines += [f"  {r.exercise.key}: {r.message}" for r in results if r.status == "FAIL" and r.message]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minilm.grade",
                                     description="Print a per-exercise score table for copies of lectures/exercises/.")
    parser.add_argument("--impl", nargs="+", default=["exercises"], metavar="IMPL",
                        help="'exercises' (default: lectures/exercises/), 'reference' (minilm) or folders "
                             "holding a copy of it")
    parser.add_argument("--csv", metavar="FILE",
                        help="also write one row per implementation: its score and 1/0 per exercise")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per implementation (default 300)")
    args = parser.parse_args(argv)

    graded: dict[str, list[Result] | None] = {}
    for impl in args.impl:
        if len(args.impl) > 1:
            print(f"== {impl}")
        try:
            graded[impl] = grade(impl, args.timeout)
            print(format_table(graded[impl], resolve_impl(impl)))
        except subprocess.TimeoutExpired:
            graded[impl] = None
            print(f"{impl}: timed out after {args.timeout:g} s (an endless loop?); graded 0")
        except (ValueError, RuntimeError) as e:
            graded[impl] = None
            print(f"{impl}: {e}")
    if args.csv:
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(["impl", "score", *BY_KEY])
        for impl, results in graded.items():
            marks = [int(r.status == "pass") for r in results] if results else [0] * len(EXERCISES)
            writer.writerow([impl, sum(marks), *marks])
        atomic_write_text(args.csv, table.getvalue())
    if len(args.impl) > 1:
        print("== summary")
        for impl, results in graded.items():
            score = sum(r.status == "pass" for r in results) if results else 0
            print(f"{score:>2}/{len(EXERCISES)}  {impl}")
    everything_passes = all(results and all(r.status == "pass" for r in results) for results in graded.values())
    return 0 if everything_passes else 1


if __name__ == "__main__":
    sys.exit(main())
