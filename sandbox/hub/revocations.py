"""Revocations reach the nodes: the hub signs a :class:`policies.instructions.Revocation` for
every revoked grant and delivers it (``NodeService.Revoke``) to each node holding one of the
grant's datasets.

What is still to deliver is derived, not queued: every revoked grant in the authority's
registry (however it was revoked) on a dataset routed to a node, minus the deliveries that node
acknowledged (``<state>/revocations.db``, SQLite, mode 0600). So a node that could not be
reached is retried before the next instruction to it (:meth:`RevocationDelivery.sync`), and
the node refuses instructions of a grant it knows revoked on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.authority import Authority
from policies.db import Database, private_dir, transaction
from policies.grants import Grant
from policies.instructions import Revocation, sign_revocation
from sandbox.hub.nodes import NodeClient, NodeRoute

log = logging.getLogger("sandbox.hub")

#: The acknowledged deliveries' file in the hub's state directory.
DELIVERIES_FILE = "revocations.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    grant_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    node TEXT NOT NULL,
    delivered_ms INTEGER NOT NULL,
    PRIMARY KEY (grant_id, version, node)
)
"""


class RevocationDelivery:
    """Delivers signed revocation notices to the nodes ``routes()`` names."""

    def __init__(
        self,
        authority: Authority,
        nodes: NodeClient,
        key: Ed25519PrivateKey,
        routes: Callable[[], Mapping[str, NodeRoute]],
        state_dir: Path | str | None = None,
    ) -> None:
        self.authority = authority
        self.nodes = nodes
        self._key = key
        self._routes = routes
        path = private_dir(Path(state_dir or authority.state_dir)) / DELIVERIES_FILE
        self.db = Database(path)
        self.db.conn().execute(_SCHEMA)
        self._lock = threading.Lock()
        #: Per node, the registry revision at which it had every notice: while the registry
        #: has not changed since, nothing can be pending and sync costs one read.
        self._clean: dict[NodeRoute, int] = {}

    def _delivered(self, node: str) -> set[tuple[str, int]]:
        rows = self.db.conn().execute(
            "SELECT grant_id, version FROM delivered WHERE node = ?", (node,)
        )
        return {(g, int(v)) for g, v in rows}

    def pending(self, route: NodeRoute) -> list[Grant]:
        """The revoked grants the node at ``route`` has not acknowledged yet."""
        routes = self._routes()
        held = {name for name, r in routes.items() if r == route}
        done = self._delivered(route.address)
        return [
            g
            for g in self.authority.registry.grants()
            if g.revoked and held & set(g.datasets) and (g.grant_id, g.version) not in done
        ]

    def sync(self, route: NodeRoute) -> int:
        """Deliver what the node at ``route`` still lacks; return how many notices it took.

        A node that does not answer is logged as a warning; the notices stay pending."""
        with self._lock:
            revision = self.authority.registry.revision()  # read before what it covers
            if self._clean.get(route) == revision:
                return 0
            sent = 0
            for grant in self.pending(route):
                notice = Revocation(grant.grant_id, grant.version, int(time.time() * 1000))
                signed = sign_revocation(self._key, notice)
                try:
                    self.nodes.revoke(route.address, signed)
                except grpc.RpcError as exc:
                    code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
                    log.warning(
                        "revocation of grant %s not delivered to node %s at %s (%s); retried "
                        "before the next instruction to it",
                        grant.grant_id,
                        route.name,
                        route.address,
                        code,
                    )
                    return sent
                with transaction(self.db.conn()) as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO delivered VALUES (?,?,?,?)",
                        (grant.grant_id, grant.version, route.address, int(time.time() * 1000)),
                    )
                self.db.wrote()
                sent += 1
            self._clean[route] = revision
            return sent

    def sync_all(self, datasets: frozenset[str] | set[str] | None = None) -> None:
        """Deliver to every node (or every node holding one of ``datasets``)."""
        routes = self._routes()
        targets = {r for name, r in routes.items() if datasets is None or name in datasets}
        for route in sorted(targets, key=lambda r: r.address):
            self.sync(route)
