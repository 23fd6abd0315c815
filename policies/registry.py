"""Durable, versioned store of grants and dataset policies (SQLite, WAL).

Every change inserts a new version; nothing is updated in place. ``revision()`` is a counter
that moves on every change so caches (the policy engine's entity set) know when to reload.

Grants and policies are validated when written. A stored row that no longer reads as a valid
grant or policy (edited outside the authority, or written by a version that accepted what is
now refused, such as an infinite cap) is returned as an :class:`UnreadableGrant` or
:class:`UnreadableDataset` beside the readable ones: it denies only its own uses, and an
unreadable grant can still be revoked.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from policies.datasets import DatasetPolicy
from policies.db import Database, open_database
from policies.errors import InvalidRequestError, UnknownGrantError
from policies.grants import Grant
from policies.parsing import describe

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (grant_id, version));
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version));
CREATE TABLE IF NOT EXISTS revision (id INTEGER PRIMARY KEY CHECK (id = 0), n INTEGER NOT NULL);
INSERT OR IGNORE INTO revision VALUES (0, 0)
"""

_CURRENT = (
    "SELECT {k}, version, body FROM {t} a "
    "WHERE version = (SELECT max(version) FROM {t} b WHERE b.{k} = a.{k}) ORDER BY {k}"
)


@dataclass(frozen=True)
class UnreadableGrant:
    """A stored grant version that is not a valid grant; it permits nothing."""

    grant_id: str
    version: int
    firm: str | None
    problem: str
    revoked: bool = False
    revoked_by: str | None = None
    revoked_reason: str | None = None


@dataclass(frozen=True)
class UnreadableDataset:
    """A stored dataset policy that is not a valid policy; its dataset can not be used."""

    dataset_id: str
    version: int
    problem: str


def _loose(body: Any) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_grant(grant_id: str, version: int, body: Any) -> Grant | UnreadableGrant:
    """The grant a stored row holds, or why it holds none."""
    try:
        return Grant.model_validate_json(body)
    except ValidationError as exc:
        problem = describe(exc, "stored grant")
    except (ValueError, TypeError, RecursionError) as exc:
        problem = f"invalid stored grant: {type(exc).__name__}"
    data = _loose(body)
    firm = data.get("firm")
    by, reason = data.get("revoked_by"), data.get("revoked_reason")
    return UnreadableGrant(
        grant_id,
        version,
        firm if isinstance(firm, str) else None,
        problem,
        data.get("revoked") is True,
        by if isinstance(by, str) else None,
        reason if isinstance(reason, str) else None,
    )


def read_dataset(dataset_id: str, version: int, body: Any) -> DatasetPolicy | UnreadableDataset:
    try:
        return DatasetPolicy.model_validate_json(body)
    except ValidationError as exc:
        return UnreadableDataset(dataset_id, version, describe(exc, "stored dataset policy"))
    except (ValueError, TypeError, RecursionError) as exc:
        return UnreadableDataset(
            dataset_id, version, f"invalid stored dataset policy: {type(exc).__name__}"
        )


def _checked(model: Any, cls: type, what: str) -> str:
    """The JSON body to store for ``model``, re-validated (a model built without validation,
    or holding a value JSON cannot carry, such as infinity, is refused here)."""
    from policies.parsing import parse_model

    body: str = model.model_dump_json()
    parse_model(cls, body, what)
    return body


class Registry:
    """Grants and dataset policies; ``target`` is a database file or a shared Database."""

    def __init__(self, target: Path | Database) -> None:
        self.db = open_database(target)
        self.path = self.db.path
        self.db.script(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def revision(self) -> int:
        """The change counter (one statement on this thread's connection, checked per decision)."""
        return int(self.db.cursor().execute("SELECT n FROM revision").fetchone()[0])

    # -- grants ---------------------------------------------------------------------------

    def create_grant(self, grant: Grant, conn: sqlite3.Connection | None = None) -> Grant:
        """Store version 1 of a new grant; refuse an id that already exists."""
        if conn is None:
            with self.db.transaction() as own:
                return self.create_grant(grant, own)
        if conn.execute("SELECT 1 FROM grants WHERE grant_id = ?", (grant.grant_id,)).fetchone():
            raise InvalidRequestError(
                f"grant {grant.grant_id!r} already exists; grants are never overwritten, "
                "revoke it and issue a new id"
            )
        stored = grant.model_copy(update={"version": 1, "revoked": False})
        self._insert(conn, "grants", stored.grant_id, 1, _checked(stored, Grant, "grant"))
        return stored

    def revoke_grant(
        self,
        grant_id: str,
        revoked_by: str,
        reason: str,
        conn: sqlite3.Connection | None = None,
    ) -> Grant | UnreadableGrant:
        """Store a new version of the grant marked revoked and return it.

        An unreadable grant is revoked too: its new version records the revocation.
        """
        if conn is None:
            with self.db.transaction() as own:
                return self.revoke_grant(grant_id, revoked_by, reason, own)
        current = self._grant(conn, grant_id)
        if current.revoked:
            raise InvalidRequestError(f"grant {grant_id!r} is already revoked")
        version = current.version + 1
        if isinstance(current, UnreadableGrant):
            marker = {
                "grant_id": grant_id,
                "firm": current.firm,
                "version": version,
                "revoked": True,
                "revoked_by": revoked_by,
                "revoked_reason": reason,
                "unreadable_version": current.version,
            }
            self._insert(conn, "grants", grant_id, version, json.dumps(marker))
            return UnreadableGrant(
                grant_id, version, current.firm, current.problem, True, revoked_by, reason
            )
        stored = current.model_copy(
            update={
                "version": version,
                "revoked": True,
                "revoked_by": revoked_by,
                "revoked_reason": reason,
            }
        )
        self._insert(conn, "grants", grant_id, version, stored.model_dump_json())
        return stored

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, key: str, version: int, body: str) -> None:
        conn.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (key, version, body))
        conn.execute("UPDATE revision SET n = n + 1")

    @staticmethod
    def _grant(conn: sqlite3.Connection, grant_id: str) -> Grant | UnreadableGrant:
        row = conn.execute(
            "SELECT version, body FROM grants WHERE grant_id = ? ORDER BY version DESC LIMIT 1",
            (grant_id,),
        ).fetchone()
        if row is None:
            raise UnknownGrantError(f"no grant {grant_id!r}; list grants to see valid ids")
        return read_grant(grant_id, row[0], row[1])

    def grant_record(
        self, grant_id: str, conn: sqlite3.Connection | None = None
    ) -> Grant | UnreadableGrant:
        """The current version of a grant, or why it cannot be read."""
        return self._grant(conn or self._conn(), grant_id)

    def grant(self, grant_id: str) -> Grant:
        """The current version of a grant (``InvalidRequestError`` if it cannot be read)."""
        found = self.grant_record(grant_id)
        if isinstance(found, UnreadableGrant):
            raise InvalidRequestError(
                f"grant {grant_id!r} v{found.version} cannot be read ({found.problem}); "
                "revoke it and issue a new grant"
            )
        return found

    def grant_history(self, grant_id: str) -> list[Grant | UnreadableGrant]:
        rows = self._conn().execute(
            "SELECT version, body FROM grants WHERE grant_id = ? ORDER BY version", (grant_id,)
        )
        history = [read_grant(grant_id, version, body) for version, body in rows]
        if not history:
            raise UnknownGrantError(f"no grant {grant_id!r}")
        return history

    def grant_records(self) -> tuple[list[Grant], list[UnreadableGrant]]:
        """Current versions of all grants: the readable ones, and the unreadable ones."""
        good: list[Grant] = []
        bad: list[UnreadableGrant] = []
        for grant_id, version, body in self._conn().execute(
            _CURRENT.format(t="grants", k="grant_id")
        ):
            found = read_grant(grant_id, version, body)
            if isinstance(found, UnreadableGrant):
                bad.append(found)
            else:
                good.append(found)
        return good, bad

    def grants(self) -> list[Grant]:
        """Current versions of all readable grants (revoked ones included, marked)."""
        return self.grant_records()[0]

    # -- datasets -------------------------------------------------------------------------

    def put_dataset(
        self, policy: DatasetPolicy, conn: sqlite3.Connection | None = None
    ) -> DatasetPolicy:
        """Store a new version of a dataset's policy (classification, identity columns, cap)."""
        if conn is None:
            with self.db.transaction() as own:
                return self.put_dataset(policy, own)
        row = conn.execute(
            "SELECT max(version) FROM datasets WHERE dataset_id = ?", (policy.dataset_id,)
        ).fetchone()
        stored = policy.model_copy(update={"version": (row[0] or 0) + 1})
        body = _checked(stored, DatasetPolicy, "dataset policy")
        self._insert(conn, "datasets", stored.dataset_id, stored.version, body)
        return stored

    def dataset_records(self) -> tuple[list[DatasetPolicy], list[UnreadableDataset]]:
        good: list[DatasetPolicy] = []
        bad: list[UnreadableDataset] = []
        for dataset_id, version, body in self._conn().execute(
            _CURRENT.format(t="datasets", k="dataset_id")
        ):
            found = read_dataset(dataset_id, version, body)
            if isinstance(found, UnreadableDataset):
                bad.append(found)
            else:
                good.append(found)
        return good, bad

    def datasets(self) -> list[DatasetPolicy]:
        return self.dataset_records()[0]

    def dataset(self, dataset_id: str, conn: sqlite3.Connection | None = None) -> DatasetPolicy:
        row = (
            (conn or self._conn())
            .execute(
                "SELECT version, body FROM datasets WHERE dataset_id = ? "
                "ORDER BY version DESC LIMIT 1",
                (dataset_id,),
            )
            .fetchone()
        )
        if row is None:
            raise InvalidRequestError(f"dataset {dataset_id!r} is not registered")
        found = read_dataset(dataset_id, row[0], row[1])
        if isinstance(found, UnreadableDataset):
            raise InvalidRequestError(
                f"dataset {dataset_id!r} policy v{found.version} cannot be read "
                f"({found.problem}); register the dataset again"
            )
        return found
