"""What the hub released for each query, so the firm can fetch it again (``GetResult``).

``<state>/releases.db`` (SQLite, mode 0600) keeps, per result id (the reservation id), the
exact bytes handed to the firm (:func:`sandbox.hub.firm.release_bytes`), their SHA-256 (the
log's ``release_sha256``), the grant, the firm and the release entry's log index. These are DP
releases already handed out: reading them again spends nothing. Only the firm that received a
release may read it; for anyone else it does not exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from policies.authority import Authority
from policies.db import Database, private_dir, transaction
from sandbox.hub.regulator import tree_head_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb

#: The release table's file in the hub's state directory.
RELEASES_FILE = "releases.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    result_id TEXT PRIMARY KEY,
    firm TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    release BLOB NOT NULL,
    digest TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    released_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class StoredRelease:
    """One query release as the firm received it."""

    result_id: str
    firm: str
    grant_id: str
    dataset: str
    release: bytes
    digest: str
    log_index: int
    released_ms: int


class ReleaseStore:
    """The query releases of one hub (``<state_dir>/releases.db``)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.path = private_dir(Path(state_dir)) / RELEASES_FILE
        self.db = Database(self.path)
        self.db.conn().execute(_SCHEMA)

    def put(
        self,
        result_id: str,
        firm: str,
        grant_id: str,
        dataset: str,
        release: bytes,
        digest: str,
        log_index: int,
    ) -> None:
        with transaction(self.db.conn()) as conn:
            conn.execute(
                "INSERT INTO releases VALUES (?,?,?,?,?,?,?,?)",
                (
                    result_id,
                    firm,
                    grant_id,
                    dataset,
                    release,
                    digest,
                    log_index,
                    int(time.time() * 1000),
                ),
            )
        self.db.wrote()

    def get(self, firm: str, result_id: str) -> StoredRelease | None:
        """The release ``result_id`` if ``firm`` received it, else ``None`` (never another
        firm's)."""
        row = (
            self.db.conn()
            .execute("SELECT * FROM releases WHERE result_id = ? AND firm = ?", (result_id, firm))
            .fetchone()
        )
        if row is None:
            return None
        result_id, owner, grant_id, dataset, release, digest, index, released_ms = row
        return StoredRelease(
            result_id, owner, grant_id, dataset, bytes(release), digest, index, released_ms
        )


def log_proof(authority: Authority, index: int) -> pb.LogProof:
    """The entry ``index``, its inclusion proof and a fresh signed tree head it verifies
    against. The head is not stored: it verifies on its own, and a hub answering thousands of
    queries would otherwise keep a head per query (regulators get stored, witnessed heads
    from ``SignedTreeHead``)."""
    head = authority.tree_head(store=False)
    return pb.LogProof(
        index=index,
        tree_size=head.size,
        inclusion_proof=authority.inclusion_proof(index, head.size),
        entry=authority.log.entry(index),
        tree_head=tree_head_pb(head),
    )


def result_response(authority: Authority, stored: StoredRelease) -> pb.GetResultResponse:
    """A stored release as ``GetResultResponse``, with a fresh log proof of its entry."""
    result = json_format.Parse(stored.release.decode("utf-8"), pb.QueryResult())
    return pb.GetResultResponse(
        result_id=stored.result_id,
        grant_id=stored.grant_id,
        query=result,
        release_digest=stored.digest,
        log=log_proof(authority, stored.log_index),
    )
