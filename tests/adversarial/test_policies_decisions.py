"""Decisions are single-use and bound to what the authority decided; accounts never collide;
a revocation wins over a decision taken before it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policies"))

from policy_helpers import NOW, credit_grant, query, tax_dataset  # noqa: E402

from policies import (  # noqa: E402
    Authority,
    DatasetTerms,
    Decision,
    InvalidRequestError,
    Loss,
    Obligations,
    PolicyError,
    ReservationState,
)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant())
    return a


def test_a_decision_reserves_once(authority: Authority) -> None:
    decision = authority.decide(query(epsilon=0.5))
    authority.reserve(decision)
    with pytest.raises(InvalidRequestError, match="already used"):
        authority.reserve(decision)
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(2.5)


def test_a_caller_built_decision_is_refused(authority: Authority) -> None:
    forged = Decision(
        True,
        (),
        Obligations("g-credit", "mallory", "tax", Loss(0.5, 0.0), query().columns, 20),
        authority.engine.policy_digest,
    )
    with pytest.raises(InvalidRequestError, match="not issued by the authority"):
        authority.reserve(forged)
    assert authority.ledger.reservations() == []


def test_the_stored_obligations_are_charged_not_the_callers(authority: Authority) -> None:
    decision = authority.decide(query(epsilon=0.5))
    assert decision.obligations is not None
    cheaper = replace(
        decision,
        obligations=replace(decision.obligations, loss=Loss(1e-6, 0.0), firm="mallory"),
    )
    reservation = authority.reserve(cheaper)
    assert reservation.epsilon == pytest.approx(0.5)
    assert reservation.firm == "acme"


def test_grant_ids_with_colons_never_share_an_account(authority: Authority) -> None:
    columns = {"income": "aggregate_only"}
    authority.register_dataset(tax_dataset(dataset_id="c"))
    authority.register_dataset(tax_dataset(dataset_id="b:c"))
    authority.create_grant(
        credit_grant(
            grant_id="a:b", datasets={"c": DatasetTerms(epsilon=2, delta=0, columns=columns)}
        )
    )
    authority.create_grant(
        credit_grant(
            grant_id="a", datasets={"b:c": DatasetTerms(epsilon=1, delta=0, columns=columns)}
        )
    )
    cols = query().columns[:1]
    decision = authority.decide(
        query(dataset="c", grant_id="a:b", columns=cols, epsilon=1.0, delta=0.0)
    )
    authority.commit(authority.reserve(decision), b"released")
    assert authority.remaining("a:b", "c").epsilon == pytest.approx(1.0)
    assert authority.remaining("a", "b:c").epsilon == pytest.approx(1.0)  # untouched
    assert authority.remaining("a", "b:c").grant.epsilon_cap == pytest.approx(1.0)


def test_a_revocation_before_reserve_wins(authority: Authority) -> None:
    decision = authority.decide(query())
    assert decision.permit
    authority.revoke_grant("g-credit", "王芳", "consent withdrawn")
    with pytest.raises(PolicyError, match="revoked"):
        authority.reserve(decision)
    assert authority.ledger.reservations() == []
    assert authority.log.search(kind="reservation")[-1]["status"] == "refused"


def test_a_revocation_before_commit_withholds_the_result_and_keeps_the_charge(
    authority: Authority,
) -> None:
    reservation = authority.reserve(authority.decide(query(epsilon=0.5)))
    authority.revoke_grant("g-credit", "王芳", "consent withdrawn")
    with pytest.raises(PolicyError, match="revoked"):
        authority.commit(reservation, b"the result")
    stored = authority.ledger.reservation(reservation.reservation_id)
    assert stored.state == ReservationState.WITHHELD
    assert authority.remaining("g-credit", "tax").grant.epsilon_spent == pytest.approx(0.5)
    assert authority.log.search(kind="release") == []
    assert authority.log.search(kind="withheld")[0]["reservation_id"] == stored.reservation_id


def test_query_service_does_not_return_a_result_revoked_during_the_release(
    tmp_path: Path, pums_catalog_dir: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from policies import Grant
    from sandbox.catalog import load_catalog
    from sandbox.query import PreparedQuery
    from sandbox.service import QueryService, dataset_policy

    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(tmp_path / "state")
    authority.register_dataset(dataset_policy(catalog["pums"], epsilon_cap=10.0, delta_cap=1e-5))
    now = datetime.now(UTC)
    authority.create_grant(
        Grant(
            grant_id="g1",
            firm="acme",
            datasets={
                "pums": DatasetTerms(epsilon=2.0, delta=0.0, columns={"*": "aggregate_only"})
            },
            purpose="research",
            legal_basis="PIPL art. 13",
            actions={"query"},
            epsilon_per_use=1.0,
            min_group_size=5,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=1),
            approved_by="official",
        )
    )
    service = QueryService(catalog, authority)
    release = PreparedQuery.release

    def revoked_meanwhile(self: PreparedQuery):  # type: ignore[no-untyped-def]
        result = release(self)
        authority.revoke_grant("g1", "official", "revoked while the query ran")
        return result

    PreparedQuery.release = revoked_meanwhile  # type: ignore[method-assign]
    try:
        with pytest.raises(PolicyError, match="revoked"):
            service.query("acme", "research", "SELECT COUNT(*) AS n FROM pums", 0.5)
    finally:
        PreparedQuery.release = release  # type: ignore[method-assign]
    assert authority.log.search(kind="release") == []
    assert authority.remaining("g1", "pums").grant.epsilon_spent == pytest.approx(0.5)
