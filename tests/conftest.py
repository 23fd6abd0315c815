"""Shared fixtures. Tests never read ../shared: data they need lives in the repository."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _verifier_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sandbox audit verify` remembers keys and heads: each test gets its own memory."""
    monkeypatch.setenv("SANDBOX_VERIFIER_HOME", str(tmp_path_factory.mktemp("verifier")))


@pytest.fixture(scope="session")
def pums_catalog_dir() -> Path:
    return ROOT / "examples" / "pums"


_DOCTESTS: set[str] = set()


#: Files whose tests share nothing (no module fixture): pytest-xdist may spread them over
#: workers one by one; every other file's tests run on one worker, so that a module fixture
#: (a hub and nodes, a training job) is set up once.
INDEPENDENT = ("tests/test_notebooks.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Remember which collected items are docstring examples (``--doctest-modules``), and
    group tests by file for ``pytest -n N --dist loadgroup`` (see ``INDEPENDENT``)."""
    _DOCTESTS.update(item.nodeid for item in items if isinstance(item, pytest.DoctestItem))
    for item in items:
        path = item.nodeid.split("::")[0]
        if path not in INDEPENDENT:
            item.add_marker(pytest.mark.xdist_group(path))


def _is_doctest(nodeid: str) -> bool:
    # Under pytest-xdist the workers collect, not this process: there, a doctest is known by
    # where it lives (docstring examples are in the packages, tests under tests/).
    return nodeid in _DOCTESTS or not nodeid.startswith("tests/")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many docstring examples ran, next to the suite's own count."""
    counts = {
        outcome: sum(1 for r in terminalreporter.stats.get(outcome, ()) if _is_doctest(r.nodeid))
        for outcome in ("passed", "failed")
    }
    terminalreporter.write_line(
        f"doctests: {counts['passed']} passed, {counts['failed']} failed "
        f"(docstring examples of sandbox, policies and federation)"
    )
