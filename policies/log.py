"""The transparency log: an append-only RFC 9162 Merkle log in SQLite (WAL).

Every entry is one line of canonical JSON (sorted keys, no spaces, UTF-8) holding at least
``index``, ``ts_ms`` and ``kind``; its leaf hash is ``SHA-256(0x00 || line)``. Next to the
entries the store keeps the hash of every complete subtree, so a tree head or a proof reads
O(log n) stored hashes and never rehashes leaves.

Appends are durable (``synchronous=FULL``) and group-committed: threads that append at the
same time share one transaction and one fsync. Several processes may append to the same
file; SQLite's write lock orders them. :meth:`TransparencyLog.append_in` appends inside a
caller's transaction on the same database, so a budget change and its entry commit together.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies import merkle
from policies.db import FILE_MODE, Database, connect, open_database
from policies.entries import ENTRY_KINDS as ENTRY_KINDS  # re-exported
from policies.entries import encode_entry as encode_entry  # re-exported
from policies.entries import validated_entry
from policies.errors import InvalidRequestError, LogIntegrityError
from policies.treehead import SignedTreeHead, sign_tree_head
from policies.verify import EXPORT_FORMAT
from policies.witness import Cosignature

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (id, size) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, data BLOB NOT NULL, kind TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    firm TEXT, dataset TEXT, decision TEXT);
CREATE INDEX IF NOT EXISTS entries_firm ON entries (firm);
CREATE INDEX IF NOT EXISTS entries_dataset ON entries (dataset);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts_ms);
CREATE TABLE IF NOT EXISTS nodes (k INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (
    size INTEGER NOT NULL, root BLOB NOT NULL, timestamp_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL, signature BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tree_heads_size ON tree_heads (size);
"""


def _node_key(level: int, index: int) -> int:
    return (level << 48) | index


@dataclass
class _Pending:
    kind: str
    fields: dict[str, Any]
    index: int | None = None
    error: BaseException | None = None


class TransparencyLog:
    """Append-only Merkle log stored in SQLite (``target``: a file or a shared Database).

    >>> import tempfile, pathlib
    >>> log = TransparencyLog(pathlib.Path(tempfile.mkdtemp()) / "log.db")
    >>> log.append("policy", {"digest": "00"})
    0
    >>> log.size
    1
    """

    def __init__(
        self,
        target: Path | Database,
        signing_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = open_database(target)
        self.path = self.db.path
        self._key = signing_key
        self._clock = clock
        self.db.script(_SCHEMA)
        self._writer_conn: sqlite3.Connection | None = None
        self._queue_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._pid = os.getpid()

    # -- reading --------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        return self.db.conn()

    @property
    def _writer(self) -> sqlite3.Connection:
        """The connection group commits use (shared by threads under ``_write_lock``)."""
        if self._writer_conn is None or self._pid != os.getpid():
            self._writer_conn = connect(self.path)
            self._pid = os.getpid()
        return self._writer_conn

    @property
    def size(self) -> int:
        return int(self._reader().execute("SELECT size FROM meta").fetchone()[0])

    def _get_node(self, level: int, index: int) -> bytes:
        row = (
            self._reader()
            .execute("SELECT hash FROM nodes WHERE k = ?", (_node_key(level, index),))
            .fetchone()
        )
        if row is None:
            raise LogIntegrityError(
                f"{self.path}: Merkle node (level {level}, index {index}) is missing; the "
                "store was modified outside this library"
            )
        return bytes(row[0])

    def _checked_size(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise InvalidRequestError(f"tree size {size} is outside 0..{current}")
        return size

    def _prefetched(self, compute: Callable[[merkle.NodeGetter], _T]) -> _T:
        """Run ``compute`` twice: once to learn which nodes it reads, then on those nodes
        fetched in a single query (a proof at a million entries reads about 40)."""
        keys: list[int] = []

        def record(level: int, index: int) -> bytes:
            keys.append(_node_key(level, index))
            return bytes(merkle.HASH_SIZE)

        compute(record)
        if not keys:
            return compute(self._get_node)
        placeholders = ",".join("?" * len(keys))
        rows = self._reader().execute(
            f"SELECT k, hash FROM nodes WHERE k IN ({placeholders})", keys
        )
        found = {k: bytes(h) for k, h in rows}

        def get(level: int, index: int) -> bytes:
            h = found.get(_node_key(level, index))
            return self._get_node(level, index) if h is None else h

        return compute(get)

    def root(self, size: int | None = None) -> bytes:
        """Merkle tree hash of the first ``size`` entries (default: all)."""
        size = self._checked_size(size)
        return self._prefetched(lambda get: merkle.subtree_hash(get, 0, size))

    def entry(self, index: int) -> bytes:
        row = self._reader().execute("SELECT data FROM entries WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise InvalidRequestError(f"log has no entry {index} (size {self.size})")
        return bytes(row[0])

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        end = self._checked_size(end)
        cur = self._reader().execute(
            "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        for (data,) in cur:
            yield bytes(data)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path for entry ``index`` in the tree of ``size`` entries (default: all)."""
        size = self._checked_size(size)
        return self._prefetched(lambda get: merkle.inclusion_proof(get, index, size))

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """Proof that the tree of ``first`` entries is a prefix of the tree of ``second``."""
        second = self._checked_size(second)
        return self._prefetched(lambda get: merkle.consistency_proof(get, first, second))

    def search(
        self,
        *,
        kind: str | None = None,
        firm: str | None = None,
        dataset: str | None = None,
        decision: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Entries matching every given filter, oldest first (or newest first), as dicts."""
        where: list[str] = []
        args: list[str | int] = []
        for column, value in (
            ("kind", kind),
            ("firm", firm),
            ("dataset", dataset),
            ("decision", decision),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since_ms is not None:
            where.append("ts_ms >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("ts_ms < ?")
            args.append(until_ms)
        sql = "SELECT data FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY idx DESC LIMIT ?" if newest_first else " ORDER BY idx LIMIT ?"
        args.append(limit)
        return [json.loads(data) for (data,) in self._reader().execute(sql, args)]

    # -- appending ------------------------------------------------------------------------

    def append(self, kind: str, fields: Mapping[str, Any]) -> int:
        """Append one entry durably and return its index.

        Concurrent callers are committed together (one transaction, one fsync).
        """
        item = _Pending(kind, validated_entry(kind, fields))
        with self._queue_lock:
            self._pending.append(item)
        with self._write_lock:
            if item.index is None and item.error is None:
                with self._queue_lock:
                    batch, self._pending = self._pending, []
                try:
                    self._write(batch)
                except BaseException as exc:
                    for pending in batch:
                        pending.error = exc
        if item.error is not None:
            raise item.error
        assert item.index is not None
        return item.index

    def append_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Append several entries in one durable transaction; return their indices."""
        batch = [_Pending(kind, validated_entry(kind, fields)) for kind, fields in items]
        with self._write_lock:
            self._write(batch)
        return [p.index for p in batch if p.index is not None]

    def append_in(
        self, conn: sqlite3.Connection, items: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[int]:
        """Append entries inside the caller's open write transaction on this log's database.

        They commit (or roll back) with whatever else that transaction writes.
        """
        batch = [_Pending(kind, validated_entry(kind, fields)) for kind, fields in items]
        self._insert(conn, batch)
        return [p.index for p in batch if p.index is not None]

    def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert(conn, batch)
            conn.execute("COMMIT")
        except BaseException:
            for item in batch:
                item.index = None
            conn.execute("ROLLBACK")
            raise

    def _insert(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        """Write ``batch`` as the next entries; the caller holds the write transaction."""
        if not batch:
            return
        ts_ms = int(self._clock() * 1000)
        size = int(conn.execute("SELECT size FROM meta").fetchone()[0])
        new_nodes: dict[int, bytes] = {}
        rows = []
        for item in batch:
            index = size
            data = encode_entry(index, ts_ms, item.kind, item.fields)
            decision = item.fields.get("decision")
            rows.append(
                (
                    index,
                    data,
                    item.kind,
                    ts_ms,
                    _text(item.fields.get("firm")),
                    _text(item.fields.get("dataset")),
                    decision if isinstance(decision, str) else None,
                )
            )
            h = merkle.leaf_hash(data)
            level, pos = 0, index
            new_nodes[_node_key(0, index)] = h
            while pos & 1:
                key = _node_key(level, pos - 1)
                left = new_nodes.get(key)
                if left is None:
                    row = conn.execute("SELECT hash FROM nodes WHERE k = ?", (key,)).fetchone()
                    if row is None:
                        raise LogIntegrityError(f"{self.path}: Merkle node {key} missing")
                    left = bytes(row[0])
                h = merkle.node_hash(left, h)
                level, pos = level + 1, pos >> 1
                new_nodes[_node_key(level, pos)] = h
            item.index = index
            size += 1
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO nodes VALUES (?, ?)", new_nodes.items())
        conn.execute("UPDATE meta SET size = ?", (size,))

    # -- tree heads and export ------------------------------------------------------------

    def sign_tree_head(self, store: bool = True) -> SignedTreeHead:
        """Sign a tree head for the current size, and store it unless ``store`` is false (a
        head handed to one caller with a proof need not be kept: it verifies on its own)."""
        if self._key is None:
            raise InvalidRequestError("this log was opened without a signing key")
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            size = int(conn.execute("SELECT size FROM meta").fetchone()[0])
            root = merkle.subtree_hash(self._get_node, 0, size)
        finally:
            conn.execute("COMMIT")
        if not store:
            return sign_tree_head(self._key, size, root, int(self._clock() * 1000))
        return self._sign(size, root)

    def tree_heads(self) -> list[SignedTreeHead]:
        rows = self._reader().execute("SELECT * FROM tree_heads ORDER BY rowid").fetchall()
        return [SignedTreeHead(s, bytes(r), t, k, bytes(sig)) for s, r, t, k, sig in rows]

    def stored_head(self, size: int) -> SignedTreeHead | None:
        """The newest stored tree head of exactly ``size`` entries, if one was kept."""
        row = (
            self._reader()
            .execute("SELECT * FROM tree_heads WHERE size = ? ORDER BY rowid DESC LIMIT 1", (size,))
            .fetchone()
        )
        if row is None:
            return None
        s, r, t, k, sig = row
        return SignedTreeHead(s, bytes(r), t, k, bytes(sig))

    def export(
        self,
        path: Path,
        head: SignedTreeHead | None = None,
        cosignatures: Sequence[Cosignature] = (),
    ) -> SignedTreeHead:
        """Write the log and a signed tree head to ``path`` (format in ``verify.py``).

        The root is recomputed from the entries as they are written, never taken from the
        stored tree: a database whose entries were edited cannot be exported under a valid
        signature. Without ``head`` the recomputed root of the whole log is signed (and the
        head stored); with ``head`` (one signed earlier, e.g. cosigned by witnesses) the first
        ``head.size`` entries are written and must hash to its root. ``cosignatures`` are
        appended after the tree head.
        """
        size = self.size if head is None else head.size
        if head is not None and size > self.size:
            raise InvalidRequestError(f"the tree head covers {size} entries, the log has fewer")
        tmp = Path(f"{path}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_line({"format": EXPORT_FORMAT, "size": size}))
                builder = merkle.TreeBuilder()
                for data in self.entries(0, size):
                    builder.append(merkle.leaf_hash(data))
                    f.write(data + b"\n")
                root = builder.root()
                if head is None:
                    head = self._sign(size, root)
                elif root != head.root:
                    raise LogIntegrityError(
                        f"the first {size} entries no longer hash to the signed root of that "
                        "size: the log database was edited"
                    )
                f.write(_line({"tree_head": head.to_json()}))
                for cos in cosignatures:
                    if not cos.covers(head):
                        raise InvalidRequestError(
                            f"the cosignature of {cos.witness!r} is over another tree head"
                        )
                    f.write(_line({"cosignature": cos.to_json()}))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return head

    def _sign(self, size: int, root: bytes) -> SignedTreeHead:
        if self._key is None:
            raise InvalidRequestError("this log was opened without a signing key")
        sth = sign_tree_head(self._key, size, root, int(self._clock() * 1000))
        with self._write_lock:
            self._writer.execute(
                "INSERT INTO tree_heads VALUES (?, ?, ?, ?, ?)",
                (sth.size, sth.root, sth.timestamp_ms, sth.key_id, sth.signature),
            )
        return sth


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
