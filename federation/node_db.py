"""The SQLite file behind a node's :class:`~federation.node_store.NodeStore`: its schema and
transactions. Every SQLite failure surfaces as :class:`~federation.errors.NodeStateError`.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "node.db"
>>> with write_transaction(path) as db:
...     _ = db.execute("INSERT INTO tallies (grant_id, dataset, plan_digest) "
...                    "VALUES ('G', 'a', 'p')")
>>> with read_transaction(path) as db:
...     db.execute("SELECT steps FROM tallies").fetchone()
(0,)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from federation.errors import NodeStateError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    max_steps INTEGER NOT NULL,
    sample_rate REAL NOT NULL,
    noise_multiplier REAL NOT NULL,
    person_data INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    PRIMARY KEY (grant_id, dataset, plan_digest)
);
CREATE TABLE IF NOT EXISTS tallies (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    dp_rows INTEGER,
    evaluations INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, dataset, plan_digest)
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 30000")
    db.executescript(_SCHEMA)
    return db


def _open(path: Path) -> sqlite3.Connection:
    try:
        return _connect(path)
    except sqlite3.Error as exc:
        raise NodeStateError(
            f"cannot open the node store {path}: {exc}; check the node state directory"
        ) from None


@contextlib.contextmanager
def write_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """An immediate (write-locked) transaction: committed on success, rolled back otherwise."""
    db = _open(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise NodeStateError(
            f"the node store {path} failed: {exc}; retry, or restore it from the node's backup"
        ) from None
    finally:
        db.close()


@contextlib.contextmanager
def read_transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for reading (autocommit)."""
    db = _open(path)
    try:
        yield db
    except sqlite3.Error as exc:
        raise NodeStateError(
            f"the node store {path} failed: {exc}; retry, or restore it from the node's backup"
        ) from None
    finally:
        db.close()
