"""Helpers the hub tests share: a PKI in a tmp directory and the REAL department node service
(``sandbox.node.start``) over mTLS, with hooks to make it refuse or fail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from policies.authority import Authority
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.node.server import RunningNode
from sandbox.node.server import start as start_node
from sandbox.node.service import _NotRun

PURPOSE = "labour-market research"


def query_grant(grant_id: str, firm: str, delta: float = 0.0) -> Grant:
    """A 30-day query grant on ``pums``: epsilon 5 (``delta``), COUNT(*) and GROUP BY sex,
    at most epsilon 1 per query, groups of at least 5."""
    now = datetime.now(UTC)
    return Grant(
        grant_id=grant_id,
        firm=firm,
        datasets={
            "pums": DatasetTerms(
                epsilon=5.0,
                delta=delta,
                columns={"*": ColumnRule.AGGREGATE_ONLY, "sex": ColumnRule.GROUP_BY},
            )
        },
        purpose=PURPOSE,
        legal_basis="个人信息保护法 art. 13(5)",
        actions=frozenset({Action.QUERY}),
        epsilon_per_use=1.0,
        min_group_size=5,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
        approved_by="official-1",
    )


def make_pki(root: Path, *principals: Principal) -> Path:
    """A CA under ``root/pki`` and a certificate for each principal; returns the directory."""
    ca = init_ca(root / "pki")
    for principal in principals:
        issue_certificate(ca, principal)
    return root / "pki"


def real_node(
    root: Path, pki: Path, authority: Authority, catalog_dir: Path, name: str = "node-1"
) -> RunningNode:
    """The department node service (NodeGuard + QueryEngine) on loopback over mTLS, with a
    dataset cap of epsilon 20, delta 1e-6 on every dataset."""
    node = start_node(
        catalog_dir,
        authority.public_key,
        root / name,
        ca=pki,
        cert=pki / f"node-{name}.pem",
        key=pki / f"node-{name}-key.pem",
        warm=False,
    )
    for manifest in node.service.catalog:
        node.service.guard.set_dataset_cap(manifest.name, epsilon=20.0, delta=1e-6)
    return node


@contextmanager
def node_mode(node: RunningNode, mode: str) -> Iterator[None]:
    """``refuse``: the node answers NotReleased; ``crash``: it fails inside the mechanism
    (it cannot confirm that nothing was released)."""
    service = node.service
    before = service.__dict__.get("_prepare")
    real = service._prepare

    def refuse(admission: Any) -> Any:
        raise _NotRun("busy", "the node is busy")

    class _Broken:
        def release(self) -> Any:
            raise RuntimeError("the node lost its disk")

    def crash(admission: Any) -> Any:
        real(admission)
        return _Broken()

    service._prepare = refuse if mode == "refuse" else crash  # type: ignore[method-assign]
    try:
        yield
    finally:
        if before is None:
            del service._prepare  # back to the class's method
        else:
            service._prepare = before  # type: ignore[method-assign]


def watch_min_group_sizes(node: RunningNode) -> list[int]:
    """The signed min_group_size of each query instruction the node prepares, newest last."""
    seen: list[int] = []
    service = node.service
    real = service._prepare

    def prepare(admission: Any) -> Any:
        seen.append(admission.instruction.min_group_size)
        return real(admission)

    service._prepare = prepare  # type: ignore[method-assign]
    return seen
