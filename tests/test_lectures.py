"""The contract between the code and the lectures, checked without running the notebooks (that is
`pytest --nbmake lectures/`, which CI runs too).

- every `Eq. L.k` the code cites exists as `\\tag{L.k}` in lecture L, and every tag of lectures 1.. is cited by the
  code (lecture 0's overview equations excepted); tags rise within each notebook, in reading order;
- the source code a stored output prints (`print(inspect.getsource(X))`) is today's source of X;
- every file the project names (`minilm/x.py`, `lectures/x.ipynb`, `CONTRIBUTING.md`, ...) exists;
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
CODE = sorted((ROOT / "minilm").rglob("*.py")) + sorted(ROOT.glob("*.py"))  # the library and the scripts

# "Eq. 3.2", "Eqs. 3.1-3.4", "Eq. 4.2/4.3", "Eqs. 6.2-6.5"
CITATION = re.compile(r"Eqs?\.\s+(\d+)\.(\d+)(?:\s*[-/]\s*(?:(\d+)\.)?(\d+))?")


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _tag_list(nb: Path) -> list[str]:
    """The \\tag{L.k} numbers of a notebook's markdown, in reading order."""
    text = "\n".join(_source(c) for c in _cells(nb) if c["cell_type"] == "markdown")
    return re.findall(r"\\tag\{(\d+\.\d+)\}", text)


def _tags(nb: Path) -> set[str]:
    return set(_tag_list(nb))


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


def test_every_tagged_equation_is_computed_somewhere_in_the_code():
    """A tag with no code line is an equation a reader cannot find; lecture 0's overview is exempt."""
    cited = _cited()
    uncited = [f"Eq. {tag} ({nb.name})" for nb in LECTURES if not nb.name.startswith("00_")
               for tag in _tag_list(nb) if tag not in cited]
    assert not uncited, f"tagged but cited by no code: {uncited}"


@pytest.mark.parametrize("nb", LECTURES, ids=lambda p: p.name)
def test_tags_rise_in_reading_order(nb):
    numbers = [tuple(int(x) for x in tag.split(".")) for tag in _tag_list(nb)]
    lecture = int(nb.stem.split("_")[0])
    assert all(major == lecture for major, _ in numbers), f"{nb.name} tags an equation of another lecture: {numbers}"
    assert numbers == sorted(set(numbers)), f"{nb.name} tags its equations out of order or twice: {numbers}"


def _printed_sources(nb: Path):
    """(expression, stored text) for every `print(inspect.getsource(EXPR))` in the notebook's code cells."""
    for cell in _cells(nb):
        if cell["cell_type"] != "code" or "getsource" not in _source(cell):
            continue
        stored = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        src = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(src)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and len(node.args) == 1 and isinstance(node.args[0], ast.Call)
                    and ast.unparse(node.args[0].func) in ("inspect.getsource", "getsource")
                    and re.fullmatch(r"[\w.]+", ast.unparse(node.args[0].args[0]))):  # a dotted name, not a loop variable
                yield ast.unparse(node.args[0].args[0]), stored


def _import_namespace(nb: Path) -> dict:
    """The names a notebook imports (its import statements only, resolved from the repository root)."""
    namespace: dict = {}
    for cell in _cells(nb):
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.parse(src).body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    namespace[alias.asname or alias.name] = getattr(module, alias.name, None) or \
                        importlib.import_module(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    module = importlib.import_module(alias.name)
                    namespace[alias.asname or alias.name.split(".")[0]] = (
                        module if alias.asname else importlib.import_module(alias.name.split(".")[0]))
    return namespace


@pytest.mark.parametrize("nb", [nb for nb in LECTURES if "getsource" in nb.read_text(encoding="utf-8")],
                         ids=lambda p: p.name)
def test_printed_source_is_todays_source(nb, monkeypatch):
    """A lecture that prints library code must show the code as it is now: re-execute it after changing the code."""
    import inspect

    monkeypatch.syspath_prepend(str(ROOT))  # the lectures import train / finetune from the repository root
    namespace = _import_namespace(nb)
    stale = []
    for expression, stored in _printed_sources(nb):
        if expression.split(".")[0] not in namespace:
            continue  # a variable of the notebook's own (e.g. a loop over functions), not an imported name
        first, *rest = expression.split(".")
        obj = namespace[first]
        for attribute in rest:  # a dotted name such as MultiHeadAttention.forward
            obj = getattr(obj, attribute)
        today = inspect.getsource(obj)
        if today.rstrip() not in stored:
            stale.append(expression)
    assert not stale, f"{nb.name} prints stale source of {stale}: re-execute it top to bottom"


# Paths the project names in its prose and code: minilm/x.py, lectures/x.ipynb, tests/x.py, bench/x.py,
# data/x/prepare.py, and top-level Markdown files such as CONTRIBUTING.md.
NAMED_PATH = re.compile(r"(?<![\w./-])((?:minilm|lectures|tests|bench|data)/[\w./-]*\w\.(?:py|ipynb|md|json)|"
                        r"(?:README|CONTRIBUTING)\.md)\b")


def test_every_file_the_project_names_exists():
    texts = [p for pattern in ("*.md", "*.py", "minilm/**/*.py", "lectures/**/*.py", "lectures/*.ipynb",
                               "tests/**/*.py", "bench/*.py", "data/*/*.py", "lectures/exercises/*.md")
             for p in ROOT.glob(pattern) if p != Path(__file__).resolve()]  # this file's examples are not paths
    missing = set()
    for path in texts:
        for m in NAMED_PATH.finditer(path.read_text(encoding="utf-8")):
            name = m.group(1)
            if not (ROOT / name).exists() and not (path.parent / name).exists():
                missing.add(f"{name} (named in {path.relative_to(ROOT)})")
    assert not missing, f"named but missing: {sorted(missing)}"


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
