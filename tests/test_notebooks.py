"""The role notebooks: each runs top to bottom on a real kernel against its own embedded
deployment (hub and four nodes as processes), and the stored copies show outputs of their
current code (``python -m sandbox.demo.notebooks`` refreshes them)."""

from __future__ import annotations

import copy
import os
import time

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from sandbox.demo.notebooks import NAMES, NOTEBOOK_DIR, code_sha256, execute, stale


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]


def test_one_notebook_per_role() -> None:
    assert {p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_shows_its_current_code(name: str) -> None:
    notebook = _read(name)
    assert stale(notebook) == [], "run: python -m sandbox.demo.notebooks " + name
    assert any("image/png" in o.get("data", {}) for o in _outputs(notebook))


def test_staleness_is_detected() -> None:
    notebook = _read("regulator")
    edited = copy.deepcopy(notebook)
    first_code = next(c for c in edited.cells if c.cell_type == "code")
    first_code.source += "\n# changed"
    assert code_sha256(edited) != code_sha256(notebook)
    assert stale(edited) == ["its code cells changed since it was executed"]
    emptied = copy.deepcopy(notebook)
    last_code = [c for c in emptied.cells if c.cell_type == "code"][-1]
    last_code.outputs = []
    assert len(stale(emptied)) == 1 and "has no outputs" in stale(emptied)[0]
    unexecuted = copy.deepcopy(notebook)
    del unexecuted.metadata["sandbox"]
    assert "never executed" in stale(unexecuted)[0]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name: str) -> None:
    notebook = execute(_read(name))
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "deployment stopped" in outputs[-1].get("text", "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deployment_stops_when_a_cell_fails() -> None:
    notebook = new_notebook(
        cells=[
            new_code_cell(
                "from sandbox.demo.deployment import start\n"
                "deployment = start(register=False)\n"
                "print(deployment.state, *[c.process.pid for c in deployment.processes.children])"
            ),
            new_code_cell("raise RuntimeError('a cell fails before the last one')"),
            new_code_cell("deployment.stop()"),
        ]
    )
    with pytest.raises(CellExecutionError, match="a cell fails"):
        execute(notebook)
    state, *pids = notebook.cells[0].outputs[0].text.split()
    assert len(pids) == 5
    deadline = time.monotonic() + 60
    while (any(_alive(int(p)) for p in pids) or os.path.exists(state)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)  # the kernel's exit handlers stop them, then remove the folder
    assert not [p for p in pids if _alive(int(p))]
    assert not os.path.exists(state)
