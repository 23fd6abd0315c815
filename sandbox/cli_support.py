"""What every ``sandbox`` sub-command does with a failure: one ``error:`` line on stderr and
exit code 2, never a traceback."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer

from policies.errors import PolicyError
from sandbox.errors import SandboxError

_T = TypeVar("_T")


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
