"""SQLite as every store here uses it: one file, WAL, full durability, long busy wait.

:class:`Database` hands each thread its own connection to one file and runs explicit
``BEGIN IMMEDIATE`` transactions. The registry, the ledger, the decisions and the log share
one :class:`Database` inside an :class:`policies.Authority`, so a budget change and its log
entry are one transaction (SQLite makes a transaction atomic within one file only).

Files are created readable by their owner only (mode 0600): SQLite creates the ``-wal`` and
``-shm`` files with the mode of the database file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from policies.errors import StateError

#: Mode of every state file (databases, exports, keys).
FILE_MODE = 0o600
#: Mode of the directories holding them.
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; a new directory gets mode 0700."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (never truncates)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit ``BEGIN IMMEDIATE``).

    A new database file is created with mode 0600 before SQLite opens it.
    """
    path = Path(path)
    private_dir(path.parent)
    private_file(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA busy_timeout=60000")
    # Switching a fresh file to WAL takes a write lock; concurrent first starts wait here.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-32768")  # 32 MiB page cache per connection
    conn.execute("PRAGMA mmap_size=268435456")  # read through a 256 MiB memory map
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """One SQLite file, a connection per thread (and per process after a fork).

    ``version()`` changes whenever anything was committed to the file, by this thread's
    connection (counted here) or any other connection (SQLite's ``PRAGMA data_version``),
    so readers can cache rows and re-read them only when the file changed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        try:
            self.conn()
        except sqlite3.Error as exc:
            raise StateError(
                f"{self.path} is not a readable SQLite database ({exc}); restore it from a "
                "backup or point the state directory elsewhere"
            ) from None

    def conn(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = local.conn = connect(self.path)
            local.pid = os.getpid()
            local.cursor = conn.cursor()
            local.writes = 0
            local.ledger_cache = None  # caches keyed by this connection's version
        return conn

    def cursor(self) -> sqlite3.Cursor:
        """This thread's reusable cursor (for single-row reads on the hot path)."""
        self.conn()
        cursor: sqlite3.Cursor = self._local.cursor
        return cursor

    def version(self) -> tuple[int, int]:
        """Changes whenever the file changed since the last call, from any connection."""
        self.conn()
        local = self._local
        return (local.cursor.execute("PRAGMA data_version").fetchone()[0], local.writes)

    def wrote(self) -> None:
        """Note a commit on this thread's connection (its own data_version does not move)."""
        self.conn()
        self._local.writes += 1

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection."""
        conn = self.conn()
        with transaction(conn):
            yield conn
        self._local.writes += 1

    def script(self, sql: str) -> None:
        """Run a schema script inside one write transaction (safe for concurrent starts)."""
        with self.transaction() as conn:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)


def open_database(target: Path | Database) -> Database:
    """``target`` itself, or a :class:`Database` on that path."""
    return target if isinstance(target, Database) else Database(Path(target))
