"""The contract between the code and the lectures, checked without running the notebooks (that is
`pytest --nbmake lectures/`, which CI runs too).

- every `Eq. L.k` the code cites exists as `\\tag{L.k}` in lecture L;
- every module of minilm/ is named by some lecture;
- every notebook was executed top to bottom, holds no error output, and imports only names that exist;
- notebooks never redefine a name that minilm defines.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
CODE = sorted((ROOT / "minilm").glob("*.py")) + [ROOT / "train.py", ROOT / "finetune.py"]

# "Eq. 3.2", "Eqs. 3.1-3.4", "Eq. 4.2/4.3", "Eqs. 6.2-6.5"
CITATION = re.compile(r"Eqs?\.\s+(\d+)\.(\d+)(?:\s*[-/]\s*(?:(\d+)\.)?(\d+))?")


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _tags(nb: Path) -> set[str]:
    text = "\n".join(_source(c) for c in _cells(nb) if c["cell_type"] == "markdown")
    return set(re.findall(r"\\tag\{(\d+\.\d+)\}", text))


def _cited() -> dict[str, set[str]]:
    """{"3.2": {"minilm/attention.py", ...}, ...} for every equation number cited in the code."""
    cited: dict[str, set[str]] = {}
    for path in CODE:
        if not path.exists():
            continue
        for m in CITATION.finditer(path.read_text(encoding="utf-8")):
            lecture, first, lecture2, last = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            end = int(last) if last is not None and (lecture2 in (None, lecture)) else first
            for k in range(first, end + 1):
                cited.setdefault(f"{lecture}.{k}", set()).add(str(path.relative_to(ROOT)))
    return cited


def test_there_is_a_lecture_per_topic():
    names = [nb.stem for nb in LECTURES]
    for expected in ("00_overview", "01_tokenizer", "02_data", "03_attention", "04_block", "05_model",
                     "06_training", "07_finetuning"):
        assert expected in names, f"lectures/{expected}.ipynb is missing"


def test_every_cited_equation_is_tagged_in_its_lecture():
    by_number = {nb.stem.split("_")[0].lstrip("0") or "0": nb for nb in LECTURES}
    missing = []
    for eq, files in sorted(_cited().items()):
        nb = by_number.get(eq.split(".")[0])
        if nb is None or eq not in _tags(nb):
            missing.append(f"Eq. {eq} (cited in {', '.join(sorted(files))}) has no \\tag{{{eq}}} in "
                           f"{nb.name if nb else 'lecture ' + eq.split('.')[0]}")
    assert not missing, "\n".join(missing)


def test_the_citation_pattern_finds_ranges():
    assert [m.groups() for m in CITATION.finditer("Eqs. 3.1-3.4 and Eq. 5.2")] == [("3", "1", "3", "4"),
                                                                                  ("5", "2", None, None)]


def test_every_module_is_named_by_a_lecture():
    text = " ".join(nb.read_text(encoding="utf-8") for nb in LECTURES)
    unnamed = [p.name for p in sorted((ROOT / "minilm").glob("*.py"))
               if p.name != "__init__.py" and f"minilm/{p.name}" not in text]
    assert not unnamed, f"modules no lecture names: {unnamed}"


@pytest.mark.parametrize("nb", LECTURES, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(nb):
    code = [c for c in _cells(nb) if c["cell_type"] == "code" and _source(c).strip()]
    counts = [c.get("execution_count") for c in code]
    assert code, f"{nb.name} has no code"
    assert None not in counts, f"{nb.name} has unexecuted cells: re-run it top to bottom and save the outputs"
    assert counts == list(range(1, len(code) + 1)), f"{nb.name} was not run top to bottom: counts {counts}"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{nb.name} holds an error output: {errors[0].get('ename')}: {errors[0].get('evalue')}"


@pytest.mark.parametrize("nb", LECTURES, ids=lambda p: p.name)
def test_notebook_imports_only_names_that_exist(nb):
    for cell in _cells(nb):
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "minilm":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}") is not None, \
                        f"{nb.name} imports {alias.name} from {node.module}, which does not exist"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "minilm":
                        importlib.import_module(alias.name)


@pytest.mark.parametrize("nb", LECTURES, ids=lambda p: p.name)
def test_notebook_does_not_redefine_library_names(nb):
    import minilm

    library = set()
    for path in (ROOT / "minilm").glob("*.py"):
        module = importlib.import_module(f"minilm.{path.stem}") if path.stem != "__init__" else minilm
        library |= {name for name, obj in vars(module).items()
                    if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__}
    for cell in _cells(nb):
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.parse(src).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.name not in library, (f"{nb.name} redefines {node.name}, which minilm defines: name a "
                                                  f"teaching scaffold as such (e.g. {node.name}_by_hand)")
