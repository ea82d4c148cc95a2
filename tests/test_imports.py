"""The library's import graph: every module imports on its own, imports flow one way, and none hides an import
inside a function to dodge a cycle (CONTRIBUTING.md, "Layout")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minilm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def _minilm_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported minilm module, at module level?) for every import of minilm in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from . import x
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                stem = f"{base}.{node.module}" if node.module else base
                targets = [stem] if node.module else [f"{base}.{a.name}" for a in node.names]
            elif node.module and node.module.split(".")[0] == "minilm":
                targets = [node.module]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "minilm"]
        for target in targets:
            if target != "minilm" and target in MODULES or target.rsplit(".", 1)[0] in MODULES:
                target = target if target in MODULES else target.rsplit(".", 1)[0]
            found.append((target, id(node) in top_level))
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): {t for t, _ in _minilm_imports(p) if t != _module_name(p) and t != "minilm"}
            for p in PACKAGE.rglob("*.py")}


def test_every_module_imports_on_its_own():
    """Each module in a fresh set of minilm modules: an import that only works after another module is caught here."""
    script = ("import importlib, sys\n"
              f"for name in {MODULES!r}:\n"
              "    for key in [k for k in sys.modules if k == 'minilm' or k.startswith('minilm.')]:\n"
              "        del sys.modules[key]\n"
              "    importlib.import_module(name)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import cycle: {' -> '.join(path[path.index(node):] + [node])}"
        if node in done:
            return
        for child in sorted(graph.get(node, ())):
            visit(child, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_no_import_hides_inside_a_function():
    """A function-local `from .x import y` is how a cycle is dodged; the graph should not need one."""
    hidden = [f"{p.relative_to(ROOT)} imports {target} inside a function"
              for p in PACKAGE.rglob("*.py") for target, top in _minilm_imports(p) if not top]
    assert not hidden, hidden
