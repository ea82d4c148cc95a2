"""The classroom exercises stay honest, and the grader grades: tests of lectures/exercises/ and minilm/classroom/grade.py.

The exercise tests themselves live in tests/exercises/ and run here against minilm (the default --impl).
"""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys

import pytest
import torch

from minilm.classroom import grade
from minilm.classroom.grade import BY_KEY, EXERCISES, EXERCISES_DIR, ROOT
from minilm.config import ModelConfig

_CONFIG = ModelConfig(vocab_size=11, max_seq_len=8, d_model=16, n_heads=2, n_layers=1)

# A valid call of each exercise: the reference must answer it, and the stub must raise NotImplementedError.
SAMPLE_CALLS = {
    "tagging.py::align_labels": lambda f: f([[5], [7, 8]], [0, 1]),
    "metrics.py::entity_spans": lambda f: f(["B-PER", "I-PER", "O"]),
    "bpe.py::get_pair_counts": lambda f: f([1, 2, 3]),
    "bpe.py::merge": lambda f: f([1, 2, 3], (1, 2), 4),
    "wordpiece.py::wordpiece_word": lambda f: f("unaffable", {"un", "##aff", "##able"}),
    "data.py::mask_tokens": lambda f: f(torch.randint(4, 20, (2, 8)), 3, 20, [0, 1, 2], torch.Generator()),
    "attention.py::causal_mask": lambda f: f(4),
    "attention.py::split_heads": lambda f: f(torch.randn(1, 3, 8), 2),
    "attention.py::merge_heads": lambda f: f(torch.randn(1, 2, 3, 4)),
    "attention.py::scaled_dot_product_attention": lambda f: f(*torch.randn(3, 1, 2, 3, 4)),
    "block.py::layer_norm": lambda f: f(torch.randn(2, 8), None, None, 1e-5),
    "block.py::gelu": lambda f: f(torch.randn(3)),
    "block.py::MLP": lambda cls: cls(_CONFIG)(torch.randn(1, 3, 16)),
    "block.py::TransformerBlock": lambda cls: cls(_CONFIG)(torch.randn(1, 3, 16)),
    "model.py::next_token_loss": lambda f: f(torch.randn(1, 3, 5), torch.randint(0, 5, (1, 3))),
    "sampling.py::top_k_filter": lambda f: f(torch.randn(2, 5), 2),
    "sampling.py::top_p_filter": lambda f: f(torch.randn(2, 5), 0.9),
    "training.py::get_lr": lambda f: f(5, 1.0, 0.1, 10, 100),
    "metrics.py::precision_recall_f1": lambda f: f([0, 1], [0, 1], 2),
    "seq2seq.py::CrossAttention": lambda cls: cls(_CONFIG)(torch.randn(1, 3, 16), torch.randn(1, 4, 16)),
    "seq2seq.py::beam_search_step": lambda f: f(torch.randn(1, 2, 5), torch.zeros(1, 2), torch.zeros(1, 2).bool(), 1),
    "rnn.py::lstm_cell": lambda f: f(*torch.randn(3, 2, 4), torch.randn(16, 4), torch.randn(16, 4)),
    "rnn.py::gru_cell": lambda f: f(*torch.randn(2, 2, 4), torch.randn(12, 4), torch.randn(12, 4)),
    "block.py::rms_norm": lambda f: f(torch.randn(2, 8), None, 1e-5),
    "block.py::SwiGLU": lambda cls: cls(_CONFIG)(torch.randn(1, 3, 16)),
    "attention.py::apply_rope": lambda f: f(torch.randn(1, 2, 3, 4), torch.arange(3)),
    "attention.py::repeat_kv": lambda f: f(torch.randn(1, 2, 3, 4), 2),
    "optim.py::adamw_step": lambda f: f(torch.zeros(3), torch.ones(3), torch.zeros(3), torch.zeros(3), 1, 0.1, 0.9,
                                        0.99, 1e-8, 0.0),
}


def _params(fn) -> list[tuple]:
    """What a caller relies on: parameter names, kinds and defaults (annotations are documentation)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


# ----------------------------------------------------------------------------------------- the exercise set is honest
def test_every_stub_file_holds_only_registered_exercises():
    files = sorted(p.name for p in EXERCISES_DIR.glob("*.py"))
    assert files == sorted({ex.file for ex in EXERCISES}), "lectures/exercises/ and minilm.classroom.grade.EXERCISES disagree"
    for file in files:
        module = grade._load_file(str((EXERCISES_DIR / file).resolve()))
        defined = {name for name, obj in vars(module).items() if not name.startswith("_")
                   and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__}
        registered = {ex.name for ex in EXERCISES if ex.file == file}
        assert defined == registered, f"lectures/exercises/{file} defines {sorted(defined)}; registered: {sorted(registered)}"


@pytest.mark.parametrize("key", list(BY_KEY))
def test_stub_has_the_reference_signature_and_a_teaching_docstring(key):
    ex, stub = BY_KEY[key], grade.load(key, "exercises")
    ref = ex.reference()
    if inspect.isclass(ref):
        assert inspect.isclass(stub), f"{key}: the reference is a class, the stub is not"
        for method in ("__init__", "forward"):
            assert _params(getattr(stub, method)) == _params(getattr(ref, method)), (
                f"{key}.{method}: stub {inspect.signature(getattr(stub, method))} != "
                f"reference {inspect.signature(getattr(ref, method))}")
    else:
        assert _params(stub) == _params(ref), f"{key}: stub {inspect.signature(stub)} != reference {inspect.signature(ref)}"
    doc = inspect.getdoc(stub) or ""
    first_eq = ex.eq.removeprefix("Eq. ").split("-")[0]  # "3.1" of "Eq. 3.1-3.4"
    assert f"Exercise {key}" in doc and first_eq in doc and "Hint" in doc, (
        f"{key}: the docstring must say 'Exercise {key}', cite Eq. {first_eq} and give hints")


def test_sample_calls_cover_every_exercise_and_the_references_answer_them():
    assert set(SAMPLE_CALLS) == set(BY_KEY)
    for key, call in SAMPLE_CALLS.items():
        call(BY_KEY[key].reference())  # a valid call, so a stub that does not raise would be caught below


@pytest.mark.parametrize("key", list(BY_KEY))
def test_every_stub_in_the_repository_is_unsolved(key):
    stub = grade.load(key, "exercises")
    with pytest.raises(NotImplementedError, match=key.replace(".", r"\.")):
        SAMPLE_CALLS[key](stub)


def test_every_exercise_is_linked_from_its_lecture_footer():
    if not list((ROOT / "lectures").glob("*.ipynb")):
        pytest.skip("no lectures/*.ipynb yet: the footers are checked once the notebooks exist")
    missing = []
    for ex in EXERCISES:
        path = ROOT / "lectures" / f"{ex.lecture}.ipynb"
        link = f"lectures/exercises/{ex.key}"
        if not path.is_file():
            missing.append(f"{path.name} does not exist (it must link {link})")
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        if link not in markdown:
            missing.append(f"{path.name} has no '{link}' in its markdown (its footer lists the exercises)")
    assert not missing, "\n".join(missing)


# ------------------------------------------------------------------------------------------------- loading an impl
def test_resolve_impl_reads_the_environment_and_rejects_non_folders(monkeypatch, tmp_path):
    monkeypatch.delenv("MINILM_IMPL", raising=False)
    assert grade.resolve_impl(None) == "reference"
    monkeypatch.setenv("MINILM_IMPL", "exercises")
    assert grade.resolve_impl(None) == "exercises"
    assert grade.resolve_impl(tmp_path) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="not 'reference', 'exercises' or a folder"):
        grade.resolve_impl(tmp_path / "nope")


def test_load_explains_a_missing_file_or_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="copy attention.py"):
        grade.load("attention.py::causal_mask", str(tmp_path))
    (tmp_path / "attention.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no 'causal_mask'"):
        grade.load("attention.py::causal_mask", str(tmp_path))
    with pytest.raises(ValueError, match="unknown exercise"):
        grade.load("attention.py::nope")


# ---------------------------------------------------------------------------------------------------- the grader
CAUSAL_MASK_SOLUTION = """T_k = T_q if T_k is None else T_k
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T_q)"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """Three grading runs (subprocesses): minilm, the untouched stubs, and a copy with one exercise solved."""
    student = tmp_path_factory.mktemp("alice") / "exercises"
    shutil.copytree(EXERCISES_DIR, student, ignore=shutil.ignore_patterns("__pycache__"))
    source = (student / "attention.py").read_text()
    stub_line = 'raise NotImplementedError("exercise attention.py::causal_mask is not attempted yet")'
    assert stub_line in source
    (student / "attention.py").write_text(source.replace(stub_line, CAUSAL_MASK_SOLUTION))
    (student / "metrics.py").write_text("def precision_recall_f1(y_true, y_pred, n_classes):\n    return (\n")  # broken
    return {impl: {r.exercise.key: r for r in grade.grade(impl, timeout=600)}
            for impl in ("reference", "exercises", str(student))}


def test_grader_passes_the_reference(graded):
    failing = {k: (r.status, r.message) for k, r in graded["reference"].items() if r.status != "pass" or r.total == 0}
    assert not failing, f"the exercise tests fail on minilm itself: {failing}"


def test_grader_reports_every_stub_not_attempted_by_name(graded):
    for key, r in graded["exercises"].items():
        assert r.status == "not attempted" and r.passed == 0 and r.total > 0, (key, r)
        assert f"lectures/exercises/{key}: not attempted" in r.message, (key, r.message)


def test_grader_sees_exactly_the_solved_exercise_pass(graded):
    results = next(v for k, v in graded.items() if k not in ("reference", "exercises"))
    assert [k for k, r in results.items() if r.status == "pass"] == ["attention.py::causal_mask"]
    assert results["metrics.py::precision_recall_f1"].status == "FAIL", "a file that does not import is a failure"
    assert "SyntaxError" in results["metrics.py::precision_recall_f1"].message
    others = [k for k in results if k.split("::")[0] not in ("attention.py", "metrics.py")]
    assert all(results[k].status == "not attempted" for k in others)


def test_main_prints_a_table_writes_a_csv_and_fails_unless_everything_passes(monkeypatch, tmp_path, capsys):
    def fake_grade(impl, timeout):  # no subprocess: the table and CSV from canned results
        passed = impl == "reference"
        return [grade.Result(ex, 2 if passed else 0, 2, "pass" if passed else "not attempted", "") for ex in EXERCISES]

    monkeypatch.setattr(grade, "grade", fake_grade)
    csv_path = tmp_path / "grades.csv"
    assert grade.main(["--impl", "reference"]) == 0
    assert grade.main(["--impl", "exercises", "reference", "--csv", str(csv_path)]) == 1
    out = capsys.readouterr().out
    assert "lectures/exercises/attention.py::causal_mask" in out and "not attempted" in out
    assert f"score: {len(EXERCISES)}/{len(EXERCISES)} exercises pass" in out and "== summary" in out
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("impl,score,bpe.py::get_pair_counts")
    assert rows[1].startswith("exercises,0,") and rows[2].startswith(f"reference,{len(EXERCISES)},")


def test_python_dash_m_minilm_grade_still_runs_the_grader():
    """The grader lives in minilm/classroom/grade.py; the old command line keeps working through minilm/grade.py."""
    proc = subprocess.run([sys.executable, "-m", "minilm.grade", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--impl" in proc.stdout, proc.stderr
