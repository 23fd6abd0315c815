"""The engine's per-revision and per-thread caches never serve a stale decision.

Each test first decides a request (so every cache is warm), then changes a grant or spends
budget, through the same objects or through separate handles on the same files (as another
process would), and decides the same request again.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from policy_helpers import NOW, credit_grant, query, tax_dataset

import policies.engine as engine_module
from policies import (
    Action,
    Authority,
    BudgetLedger,
    ColumnRef,
    Loss,
    PolicyEngine,
    Registry,
)
from policies.ledger import grant_account


def codes(decision: object) -> set[str]:
    return {r.code for r in decision.reasons}  # type: ignore[attr-defined]


def test_revocation_is_seen_by_the_next_decision(authority: Authority) -> None:
    assert authority.decide(query()).permit
    assert authority.decide(query()).permit  # served from the warm snapshot
    authority.revoke_grant("g-credit", "王芳", "purpose achieved")
    d = authority.decide(query())
    assert not d.permit
    assert codes(d) == {"grant-revoked"}
    assert d.obligations is None


def test_revocation_through_another_handle_is_seen(authority: Authority) -> None:
    assert authority.decide(query()).permit
    Registry(authority.registry.path).revoke_grant("g-credit", "王芳", "consent withdrawn")
    d = authority.decide(query())
    assert codes(d) == {"grant-revoked"}
    assert "consent withdrawn" in d.reasons[0].message


def test_revocation_in_another_thread_is_seen(authority: Authority) -> None:
    assert authority.decide(query()).permit
    worker = threading.Thread(
        target=authority.revoke_grant, args=("g-credit", "王芳", "revoked from a worker")
    )
    worker.start()
    worker.join()
    assert codes(authority.decide(query())) == {"grant-revoked"}


def test_explicit_grant_id_sees_revocation(authority: Authority) -> None:
    assert authority.decide(query(grant_id="g-credit")).permit
    authority.revoke_grant("g-credit", "王芳", "purpose achieved")
    assert codes(authority.decide(query(grant_id="g-credit"))) == {"grant-revoked"}


def test_spent_budget_is_seen_by_the_next_decision(authority: Authority) -> None:
    # The grant has epsilon 3 on tax; spend 2.75 of it, deciding (and caching) in between.
    for _ in range(5):
        d = authority.decide(query(epsilon=0.55))
        assert d.permit
        authority.commit(authority.reserve(d), b"released")
    assert authority.decide(query(epsilon=0.25)).permit
    d = authority.decide(query(epsilon=0.3))
    assert codes(d) == {"budget-exhausted"}
    assert "grant:g-credit:tax has epsilon 0.25 left of 3" in d.reasons[0].message


def test_budget_spent_through_another_handle_is_seen(authority: Authority) -> None:
    assert authority.decide(query(epsilon=1.0)).permit  # account rows now cached
    other = BudgetLedger(authority.ledger.path)  # another connection, as another process
    for _ in range(3):
        other.reserve("g-credit", "tax", "acme", Loss(1.0, 1e-8))
    d = authority.decide(query(epsilon=0.1))
    assert not d.permit
    assert codes(d) == {"budget-exhausted"}
    assert "grant:g-credit:tax has epsilon 0 left of 3" in d.reasons[0].message


def test_lowered_cap_is_seen(authority: Authority) -> None:
    assert authority.decide(query(epsilon=0.5)).permit
    BudgetLedger(authority.ledger.path).open_account(grant_account("g-credit", "tax"), 0.4, 1e-6)
    assert codes(authority.decide(query(epsilon=0.5))) == {"budget-exhausted"}


def test_dataset_cap_is_checked_as_well(authority: Authority) -> None:
    assert authority.decide(query(epsilon=0.5)).permit
    authority.register_dataset(tax_dataset(epsilon_cap=0.25))
    d = authority.decide(query(epsilon=0.5))
    assert codes(d) == {"budget-exhausted"}
    assert "dataset:tax" in d.reasons[0].message


def test_refund_is_seen(authority: Authority) -> None:
    reservations = []
    for _ in range(3):
        d = authority.decide(query(epsilon=1.0))
        reservations.append(authority.reserve(d))
    assert codes(authority.decide(query(epsilon=1.0))) == {"budget-exhausted"}
    authority.refund(reservations[0])
    assert authority.decide(query(epsilon=1.0)).permit


def test_zcdp_request_uses_the_full_composition(authority: Authority) -> None:
    # rho 0.1 at delta 5e-7 converts to epsilon ~2.5; after 2.5 of basic spend it must not
    # fit, though its declared epsilon (0.1) alone would.
    for _ in range(5):
        authority.commit(authority.reserve(authority.decide(query(epsilon=0.5))), b"r")
    assert authority.decide(query(epsilon=0.1)).permit
    d = authority.decide(query(epsilon=0.1, delta=5e-7, rho=0.1))
    assert codes(d) == {"budget-exhausted"}


def _requests() -> list:
    cols = (ColumnRef(name="income", use="aggregate"), ColumnRef(name="region", use="group_by"))
    return [
        query(),
        query(firm="other-firm"),
        query(firm="other-firm", grant_id="g-credit"),
        query(purpose="marketing", epsilon=2.0, columns=(ColumnRef(name="name", use="filter"),)),
        query(columns=(ColumnRef(name="id_card_number", use="group_by"),)),
        query(action=Action.TRAIN, model="logreg-v1", columns=cols),
        query(action=Action.TRAIN, model="gpt-huge"),
        query(min_group_size=5),
        query(purpose='quote " and \\ and 中文 in a purpose'),
        query(dataset="health"),
    ]


def test_decisions_through_the_public_cedar_api(authority: Authority) -> None:
    decided = [authority.engine.decide(r) for r in _requests()]
    assert [d.permit for d in decided] == [
        True, False, False, False, False, True, False, False, False, False
    ]  # fmt: skip
    assert codes(decided[7]) == {"group-size-below-minimum"}
    again = [authority.engine.decide(r) for r in _requests()]  # warm snapshot and reasons
    assert again == decided


def test_only_the_cedar_module_uses_cedarpy_and_never_its_private_parts() -> None:
    folder = Path(engine_module.__file__).parent
    users = sorted(p.name for p in folder.glob("*.py") if "cedarpy" in p.read_text("utf-8"))
    assert users == ["cedar.py"]
    assert "_internal" not in (folder / "cedar.py").read_text("utf-8")


def test_the_decision_cache_lives_on_the_engine(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "grants.db")
    registry.put_dataset(tax_dataset())
    registry.create_grant(credit_grant())
    one, two = (PolicyEngine(registry, clock=lambda: NOW) for _ in range(2))
    assert one.decide(query()).permit
    assert one._snapshot is not None and two._snapshot is None  # nothing shared


def test_engine_without_ledger_still_decides(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "grants.db")
    registry.put_dataset(tax_dataset())
    registry.create_grant(credit_grant())
    engine = PolicyEngine(registry, clock=lambda: NOW)
    assert engine.decide(query()).permit
    registry.revoke_grant("g-credit", "王芳", "done")
    assert codes(engine.decide(query())) == {"grant-revoked"}


def test_deciding_leaves_no_read_transaction_open(authority: Authority) -> None:
    # The registry and ledger reuse one cursor per thread; a statement left pending would
    # pin a WAL snapshot and stop checkpoints.
    assert authority.decide(query()).permit
    for path in (authority.registry.path, authority.ledger.path):
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("COMMIT")
            busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            other.close()
        assert busy == 0, path
