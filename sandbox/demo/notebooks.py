"""Execute the role notebooks in ``notebooks/`` and store them with their outputs.

    python -m sandbox.demo.notebooks                 # all four
    python -m sandbox.demo.notebooks regulator       # one (by name, without .ipynb)

Each notebook runs top to bottom on a fresh ``python3`` kernel (this interpreter's), against
its own embedded deployment (:mod:`sandbox.demo.deployment`). It is written back with its
outputs (charts as PNG) and, in its metadata, the SHA-256 of its code cells
(:func:`code_sha256`): :func:`stale` tells a stored notebook whose outputs no longer match its
code. Needs the ``dev`` extra (nbclient, nbformat, ipykernel, matplotlib).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.demo.processes import DemoError

#: The folder of the role notebooks (a source checkout's ``notebooks/``).
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("department", "firm_queries", "firm_training", "regulator")
#: Where the hash is kept: ``metadata[METADATA_KEY]["code_sha256"]``.
METADATA_KEY = "sandbox"
#: Per-cell limit when executing.
CELL_TIMEOUT_S = 300


def code_sha256(notebook: Any) -> str:
    """SHA-256 of the notebook's code cells' sources, in order."""
    sources = [c.source for c in notebook.cells if c.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode("utf-8")).hexdigest()


def stale(notebook: Any) -> list[str]:
    """Why the notebook's stored outputs do not show its code (empty: they do)."""
    reasons = []
    stored = notebook.metadata.get(METADATA_KEY, {}).get("code_sha256")
    if stored is None:
        reasons.append("no code hash in its metadata: it was never executed by this script")
    elif stored != code_sha256(notebook):
        reasons.append("its code cells changed since it was executed")
    for number, cell in enumerate(notebook.cells, 1):
        if cell.cell_type != "code":
            continue
        if not cell.outputs:
            reasons.append(f"code cell {number} has no outputs")
        if any(o.output_type == "error" for o in cell.outputs):
            reasons.append(f"code cell {number} stored an error")
    return reasons


def execute(notebook: Any, timeout: int = CELL_TIMEOUT_S) -> Any:
    """Run every cell of ``notebook`` (in place) on a fresh ``python3`` kernel, in the
    notebooks folder; raises nbclient's ``CellExecutionError`` on the first failing cell."""
    from nbclient import NotebookClient  # type: ignore[import-untyped,unused-ignore]

    NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    ).execute()
    return notebook


def refresh(name: str) -> float:
    """Execute ``notebooks/<name>.ipynb`` and store it with its outputs and code hash;
    returns the seconds it took."""
    import nbformat  # type: ignore[import-untyped,unused-ignore]

    path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.exists():
        raise DemoError(f"no notebook {path}; name one of {', '.join(NAMES)}")
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call,unused-ignore]
    started = time.monotonic()
    execute(notebook)
    seconds = time.monotonic() - started
    notebook.metadata[METADATA_KEY] = {
        "code_sha256": code_sha256(notebook),
        "executed_by": "python -m sandbox.demo.notebooks",
    }
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call,unused-ignore]
    return seconds


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(NAMES)
    for name in names:
        try:
            seconds = refresh(name.removesuffix(".ipynb"))
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # nbclient's CellExecutionError: the failing cell's traceback
            print(f"error: {name}.ipynb failed; nothing was written:\n{exc}", file=sys.stderr)
            return 1
        print(f"{name}.ipynb executed in {seconds:.1f} s and stored with its outputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
