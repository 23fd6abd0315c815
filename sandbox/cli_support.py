"""What every ``sandbox`` sub-command does with a failure: one ``error:`` line on stderr and
exit code 2, never a traceback; and where a server's Flower and Ray output goes (a log file,
never the terminal)."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import typer

from policies.errors import PolicyError
from sandbox.errors import SandboxError

_T = TypeVar("_T")

#: The loggers of Flower and Ray (as ``federation.simulation.FLOWER_LOGGERS``).
FLOWER_LOGGERS = ("flwr", "flwr-telemetry", "ray")


def send_flower_output(log_file: Path) -> Path:
    """From now on, in this process, Flower's and Ray's log records go to ``log_file``
    (appended, created 0600) and not to the terminal: ``sandbox hub serve`` and ``sandbox node
    serve`` send them to ``STATE/logs/flower.log``. Flower's logger module is imported first
    (0.3 s; it adds its terminal handler when imported); Ray is not imported."""
    import flwr.supercore.logger  # noqa: F401 - adds the terminal handler replaced below

    log_file = Path(log_file)
    missing = [d for d in (log_file.parent, *log_file.parent.parents) if not d.exists()]
    for directory in reversed(missing):  # every new directory private, not just the last
        directory.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    for name in FLOWER_LOGGERS:
        logger = logging.getLogger(name)
        for old in logger.handlers:
            if isinstance(old, logging.FileHandler):
                old.close()
        logger.handlers = [handler]
        logger.propagate = False
    return log_file


def fail(message: object) -> NoReturn:
    """Print ``message`` as one ``error:`` line (whitespace folded) and exit with code 2."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code=2)


def guarded(action: Callable[[], _T], store: str) -> _T:
    """Run ``action``; the project's errors, file-system errors and SQLite errors become one
    error line. ``store`` names what a SQLite error is about, e.g. "the hub's state (--state)".
    """
    try:
        return action()
    except (SandboxError, PolicyError) as exc:
        fail(exc)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot use{where}: {exc.strerror or exc}")
    except sqlite3.Error as exc:
        fail(f"{store} cannot be used ({exc})")
