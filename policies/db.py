"""SQLite connections as every store here opens them: WAL, full durability, long busy wait."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit ``BEGIN IMMEDIATE``)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute("PRAGMA cache_size=-32768")  # 32 MiB page cache per connection
    conn.execute("PRAGMA mmap_size=268435456")  # read through a 256 MiB memory map
    return conn
