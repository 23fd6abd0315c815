"""Durable, versioned store of grants and dataset policies (SQLite, WAL).

Every change inserts a new version; nothing is updated in place. ``revision()`` is a counter
that moves on every change so caches (the policy engine's entity set) know when to reload.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from policies.datasets import DatasetPolicy
from policies.db import connect
from policies.errors import InvalidRequestError, UnknownGrantError
from policies.grants import Grant

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grant_id, version));
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version));
CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
INSERT OR IGNORE INTO revision VALUES (0, 0);
"""

_CURRENT = (
    "SELECT body FROM {t} a WHERE version = (SELECT max(version) FROM {t} b WHERE b.{k} = a.{k})"
)


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    def revision(self) -> int:
        """The change counter (one statement on this thread's connection, checked per decision)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._conn().cursor()
        return int(cursor.execute("SELECT n FROM revision").fetchone()[0])

    # -- grants ---------------------------------------------------------------------------

    def create_grant(self, grant: Grant) -> Grant:
        """Store version 1 of a new grant; refuse an id that already exists."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(
                "SELECT 1 FROM grants WHERE grant_id = ?", (grant.grant_id,)
            ).fetchone():
                raise InvalidRequestError(
                    f"grant {grant.grant_id!r} already exists; grants are never overwritten, "
                    "revoke it and issue a new id"
                )
            stored = grant.model_copy(update={"version": 1, "revoked": False})
            self._insert_grant(conn, stored)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return stored

    def revoke_grant(self, grant_id: str, revoked_by: str, reason: str) -> Grant:
        """Store a new version of the grant marked revoked and return it."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = self._grant(conn, grant_id)
            if current.revoked:
                raise InvalidRequestError(f"grant {grant_id!r} is already revoked")
            stored = current.model_copy(
                update={
                    "version": current.version + 1,
                    "revoked": True,
                    "revoked_by": revoked_by,
                    "revoked_reason": reason,
                }
            )
            self._insert_grant(conn, stored)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return stored

    @staticmethod
    def _insert_grant(conn: sqlite3.Connection, grant: Grant) -> None:
        conn.execute(
            "INSERT INTO grants VALUES (?, ?, ?)",
            (grant.grant_id, grant.version, grant.model_dump_json()),
        )
        conn.execute("UPDATE revision SET n = n + 1")

    @staticmethod
    def _grant(conn: sqlite3.Connection, grant_id: str) -> Grant:
        row = conn.execute(
            "SELECT body FROM grants WHERE grant_id = ? ORDER BY version DESC LIMIT 1", (grant_id,)
        ).fetchone()
        if row is None:
            raise UnknownGrantError(f"no grant {grant_id!r}; list grants to see valid ids")
        return Grant.model_validate_json(row[0])

    def grant(self, grant_id: str) -> Grant:
        """The current version of a grant."""
        return self._grant(self._conn(), grant_id)

    def grant_history(self, grant_id: str) -> list[Grant]:
        rows = self._conn().execute(
            "SELECT body FROM grants WHERE grant_id = ? ORDER BY version", (grant_id,)
        )
        history = [Grant.model_validate_json(body) for (body,) in rows]
        if not history:
            raise UnknownGrantError(f"no grant {grant_id!r}")
        return history

    def grants(self) -> list[Grant]:
        """Current versions of all grants (revoked ones included, marked)."""
        rows = self._conn().execute(_CURRENT.format(t="grants", k="grant_id") + " ORDER BY 1")
        return sorted(
            (Grant.model_validate_json(body) for (body,) in rows), key=lambda g: g.grant_id
        )

    # -- datasets -------------------------------------------------------------------------

    def put_dataset(self, policy: DatasetPolicy) -> DatasetPolicy:
        """Store a new version of a dataset's policy (classification, identity columns, cap)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT max(version) FROM datasets WHERE dataset_id = ?", (policy.dataset_id,)
            ).fetchone()
            stored = policy.model_copy(update={"version": (row[0] or 0) + 1})
            conn.execute(
                "INSERT INTO datasets VALUES (?, ?, ?)",
                (stored.dataset_id, stored.version, stored.model_dump_json()),
            )
            conn.execute("UPDATE revision SET n = n + 1")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return stored

    def datasets(self) -> list[DatasetPolicy]:
        rows = self._conn().execute(_CURRENT.format(t="datasets", k="dataset_id"))
        return sorted(
            (DatasetPolicy.model_validate_json(body) for (body,) in rows),
            key=lambda d: d.dataset_id,
        )

    def dataset(self, dataset_id: str) -> DatasetPolicy:
        row = (
            self._conn()
            .execute(
                "SELECT body FROM datasets WHERE dataset_id = ? ORDER BY version DESC LIMIT 1",
                (dataset_id,),
            )
            .fetchone()
        )
        if row is None:
            raise InvalidRequestError(f"dataset {dataset_id!r} is not registered")
        return DatasetPolicy.model_validate_json(row[0])
