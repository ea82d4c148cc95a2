"""Plumbing for the exercise tests: which implementation they test, and "not attempted" reports.

Every test here carries `@pytest.mark.exercise("attention.py::causal_mask")` and takes the `solution` fixture: the
object of that name from the implementation chosen with `--impl` / MINILM_IMPL (minilm itself by default, see
minilm/classroom/grade.py). The tests compare it with PyTorch, scikit-learn or hand-computed values, never with minilm.
"""

from __future__ import annotations

import pytest

from minilm.classroom.grade import BY_KEY, display_name, load, resolve_impl


def pytest_configure(config):
    config.addinivalue_line("markers", "exercise(key): the exercise ('file.py::name') this test grades")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("exercise")
        if marker is None:
            continue
        key = marker.args[0]
        assert key in BY_KEY, f"{item.nodeid}: exercise {key!r} is not listed in minilm.classroom.grade.EXERCISES"
        item.user_properties.append(("exercise", key))  # read by the grader (minilm.classroom.grade._Recorder)


@pytest.fixture(scope="session")
def impl(request) -> str:
    """'reference', 'exercises' or the absolute path of a student's folder."""
    return resolve_impl(request.config.getoption("--impl"))


@pytest.fixture
def solution(request, impl):
    """The function or class under test, named by the test's exercise marker."""
    marker = request.node.get_closest_marker("exercise")
    assert marker is not None, "a test that uses `solution` needs @pytest.mark.exercise('file.py::name')"
    return load(marker.args[0], impl)


class _NotAttempted:
    """A short failure report in place of the traceback into a stub that still raises NotImplementedError."""

    def __init__(self, text: str):
        self.text = self.message = text
        self.reprcrash = self  # its .message is what `pytest -ra` prints on the summary line, str() what --tb=line does

    def toterminal(self, tw) -> None:
        tw.line(self.text)

    def __str__(self) -> str:
        return self.text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    marker = item.get_closest_marker("exercise")
    if marker is not None and call.excinfo is not None and call.excinfo.errisinstance(NotImplementedError):
        key = marker.args[0]
        impl = resolve_impl(item.config.getoption("--impl"))
        name = display_name(key, impl)
        report.longrepr = _NotAttempted(
            f"{name}: not attempted yet (it raises NotImplementedError). Read its docstring, write the body, "
            f"then rerun: pytest tests/exercises -k {BY_KEY[key].name} --impl={impl}")
        report.user_properties = [*report.user_properties, ("not_attempted", True)]
    return report
