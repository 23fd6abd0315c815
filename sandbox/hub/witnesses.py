"""The hub asks its department nodes to witness the tree heads it signs.

:class:`HubWitnesses` sends a freshly signed head to every node that has a route, in parallel
and with a short deadline, each with the RFC 9162 consistency proof from the size that node
last cosigned (kept in memory per node; on first contact, or when the node refuses, read from
its ``ReportMetadata.last_witnessed_head``, then retried once). Each cosignature that comes
back is checked against the witness key the node reported and kept in
:class:`CosignatureStore` (``<hub state>/witnesses.db``, mode 0600), so that an export of that
head can carry it. A node that is down or refuses adds no cosignature (a warning is logged):
the head is still served, and a verifier that requires k of n witnesses decides.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from policies.authority import Authority
from policies.errors import WitnessError
from policies.treehead import SignedTreeHead
from policies.witness import Cosignature, verify_cosignature
from sandbox.hub.nodes import NodeClient, NodeRoute
from sandbox.node.witness import cosignature_from_pb, tree_head_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb

log = logging.getLogger(__name__)

#: The store's file inside the hub's state directory.
WITNESS_DB_FILE = "witnesses.db"
#: How long the hub waits for one node's answer when asking it to witness a head.
WITNESS_TIMEOUT_S = 2.0


class CosignatureStore:
    """The cosignatures the hub collected, per tree head (one SQLite file, mode 0600)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS cosignatures (authority_key_id TEXT NOT NULL, "
            "size INTEGER NOT NULL, root TEXT NOT NULL, head_timestamp_ms INTEGER NOT NULL, "
            "witness TEXT NOT NULL, cosignature TEXT NOT NULL, PRIMARY KEY "
            "(authority_key_id, size, root, head_timestamp_ms, witness))"
        )

    def add(self, cos: Cosignature) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cosignatures VALUES (?, ?, ?, ?, ?, ?)",
                (
                    cos.authority_key_id,
                    cos.size,
                    cos.root.hex(),
                    cos.head_timestamp_ms,
                    cos.witness,
                    json.dumps(cos.to_json(), sort_keys=True),
                ),
            )

    def for_head(self, head: SignedTreeHead) -> list[Cosignature]:
        """The cosignatures kept for exactly ``head``, by witness name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT cosignature FROM cosignatures WHERE authority_key_id = ? AND size = ? "
                "AND root = ? AND head_timestamp_ms = ? ORDER BY witness",
                (head.key_id, head.size, head.root.hex(), head.timestamp_ms),
            ).fetchall()
        return [Cosignature.from_json(json.loads(row[0])) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class HubWitnesses:
    """Collects the nodes' cosignatures of the heads the hub signs.

    ``routes()`` returns the hub's current routes (dataset -> node); every distinct node among
    them is asked. ``timeout_s`` bounds each call to a node.
    """

    def __init__(
        self,
        authority: Authority,
        nodes: NodeClient,
        routes: Callable[[], Mapping[str, NodeRoute]],
        store: CosignatureStore,
        timeout_s: float = WITNESS_TIMEOUT_S,
    ) -> None:
        self.authority = authority
        self.nodes = nodes
        self.routes = routes
        self.store = store
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}  # node name -> size it last cosigned
        self._keys: dict[str, Ed25519PublicKey] = {}  # node name -> its witness key
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hub-witness")

    @classmethod
    def open(
        cls,
        authority: Authority,
        nodes: NodeClient,
        routes: Callable[[], Mapping[str, NodeRoute]],
        timeout_s: float = WITNESS_TIMEOUT_S,
    ) -> HubWitnesses:
        """With the store in the authority's state directory."""
        store = CosignatureStore(authority.state_dir / WITNESS_DB_FILE)
        return cls(authority, nodes, routes, store, timeout_s)

    def collect(self, head: SignedTreeHead) -> list[Cosignature]:
        """Ask every routed node to cosign ``head``; the cosignatures that came back in time
        (each verified with the node's witness key), by witness name."""
        targets = sorted({(r.name, r.address) for r in self.routes().values()})
        if not targets:
            return []
        futures = [self._pool.submit(self._ask, name, address, head) for name, address in targets]
        done, _ = wait(futures, timeout=2.5 * self.timeout_s)
        got: list[Cosignature] = []
        for future in done:
            error = future.exception()
            if error is not None:
                log.warning("a node could not be asked to witness: %r", error)
                continue
            cos = future.result()
            if cos is not None:
                got.append(cos)
        return sorted(got, key=lambda c: c.witness)

    def witness_key(self, name: str) -> Ed25519PublicKey | None:
        """The witness key node ``name`` reported (``None`` before the hub asked it)."""
        with self._lock:
            return self._keys.get(name)

    def cosignatures(self, head: SignedTreeHead) -> list[Cosignature]:
        """The cosignatures kept for ``head`` (including any that came back late)."""
        return self.store.for_head(head)

    def _ask(self, name: str, address: str, head: SignedTreeHead) -> Cosignature | None:
        try:
            with self._lock:
                since = self._last.get(name)
            if since is None:
                since = self._from_metadata(name, address, head)
            try:
                reply = self.nodes.witness(address, self._request(head, since), self.timeout_s)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                since = self._from_metadata(name, address, head)  # the node knows better
                reply = self.nodes.witness(address, self._request(head, since), self.timeout_s)
            cos = cosignature_from_pb(reply.cosignature)
            with self._lock:
                key = self._keys.get(name)
            if key is None:
                raise WitnessError(f"node {name} reported no witness key")
            verify_cosignature(cos, head, key)
        except grpc.RpcError as exc:
            log.warning(
                "node %s did not cosign the tree head of size %d: %s %s",
                name,
                head.size,
                exc.code().name,
                exc.details(),
            )
            return None
        except WitnessError as exc:
            log.warning("node %s sent an unusable cosignature: %s", name, exc)
            return None
        with self._lock:
            self._last[name] = head.size
        self.store.add(cos)
        return cos

    def _from_metadata(self, name: str, address: str, head: SignedTreeHead) -> int:
        """The size of the last head the node cosigned for this authority (0: none); its
        witness key is remembered."""
        meta = self.nodes.report_metadata(address, self.timeout_s)
        if meta.witness_key_pem:
            try:
                key = load_pem_public_key(meta.witness_key_pem.encode())
            except ValueError:
                raise WitnessError(f"node {name} reported a witness key that is not PEM") from None
            if not isinstance(key, Ed25519PublicKey):
                raise WitnessError(f"node {name} reported a witness key that is not Ed25519")
            with self._lock:
                self._keys[name] = key
        last = meta.last_witnessed_head
        if meta.HasField("last_witnessed_head") and last.key_id == head.key_id:
            return int(last.size)
        return 0

    def _request(self, head: SignedTreeHead, since: int) -> pb.WitnessRequest:
        proof = self.authority.consistency_proof(since, head.size) if 0 < since < head.size else []
        return pb.WitnessRequest(
            tree_head=tree_head_pb(head), consistency_proof=proof, from_size=since
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
