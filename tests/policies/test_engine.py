"""The policy engine: deny by default, every reason named, global forbids beat grants."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from policy_helpers import NOW, credit_grant, query, tax_dataset

from policies import Action, Authority, ColumnRef, Registry
from policies.ledger import grant_account


def codes(decision: object) -> set[str]:
    return {r.code for r in decision.reasons}  # type: ignore[attr-defined]


def test_permit_names_the_grant_and_obligations(authority: Authority) -> None:
    d = authority.decide(query())
    assert d.permit, d.reasons
    assert codes(d) == {"grant-covers-firm-and-dataset"}
    assert "g-credit" in d.reasons[0].message
    ob = d.obligations
    assert ob is not None
    assert (ob.grant_id, ob.dataset, ob.loss.epsilon, ob.min_group_size) == (
        "g-credit",
        "tax",
        0.5,
        20,
    )
    assert {c.name for c in ob.columns} == {"income", "region", "age"}


def test_unknown_firm_is_denied_by_default(authority: Authority) -> None:
    d = authority.decide(query(firm="other-firm"))
    assert not d.permit
    assert codes(d) == {"no-grant"}
    assert d.obligations is None


def test_grant_of_another_firm_cannot_be_borrowed(authority: Authority) -> None:
    d = authority.decide(query(firm="other-firm", grant_id="g-credit"))
    assert not d.permit
    assert codes(d) == {"grant-does-not-cover"}


def test_expired_grant_is_denied(tmp_path: Path) -> None:
    later = datetime(2027, 3, 1, tzinfo=UTC).timestamp()
    a = Authority(tmp_path, clock=lambda: later)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant())
    d = a.decide(query())
    assert not d.permit
    assert codes(d) == {"grant-expired"}
    assert "expired at 2027-01-01" in d.reasons[0].message


def test_not_yet_valid_grant_is_denied(tmp_path: Path) -> None:
    a = Authority(tmp_path, clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant(valid_from=datetime(2026, 9, 1, tzinfo=UTC)))
    assert codes(a.decide(query())) == {"grant-not-yet-valid"}


def test_revoked_grant_is_denied_and_revocation_is_logged(authority: Authority) -> None:
    assert authority.decide(query()).permit
    authority.revoke_grant("g-credit", "王芳", "purpose achieved")
    d = authority.decide(query())
    assert not d.permit
    assert codes(d) == {"grant-revoked"}
    assert "purpose achieved" in d.reasons[0].message
    entries = authority.log.search(kind="revocation")
    assert [(e["grant_id"], e["version"]) for e in entries] == [("g-credit", 2)]
    history = authority.registry.grant_history("g-credit")
    assert [g.revoked for g in history] == [False, True]


def test_wrong_purpose_is_denied(authority: Authority) -> None:
    d = authority.decide(query(purpose="marketing"))
    assert codes(d) == {"purpose-not-granted"}
    assert "'marketing'" in d.reasons[0].message


@pytest.mark.parametrize(
    ("column", "use", "rule"),
    [
        ("income", "filter", "aggregate_only"),
        ("age", "group_by", "filter_only"),
        ("name", "aggregate", "never"),
        ("salary", "aggregate", "not listed"),
    ],
)
def test_wrong_column_use_is_denied(authority: Authority, column: str, use: str, rule: str) -> None:
    d = authority.decide(query(columns=(ColumnRef(name=column, use=use),)))
    assert not d.permit
    assert codes(d) == {"column-use-not-granted"}
    assert f"{column} as {use} (rule: {rule})" in d.reasons[0].message


def test_over_per_use_cap_is_denied(authority: Authority) -> None:
    d = authority.decide(query(epsilon=1.2))
    assert codes(d) == {"epsilon-over-per-use-cap"}
    assert "per-use cap 1.0" in d.reasons[0].message


def test_small_groups_are_denied(authority: Authority) -> None:
    assert codes(authority.decide(query(min_group_size=5))) == {"group-size-below-minimum"}


def test_every_failed_check_is_listed(authority: Authority) -> None:
    d = authority.decide(
        query(purpose="marketing", epsilon=2.0, columns=(ColumnRef(name="name", use="filter"),))
    )
    assert codes(d) == {"purpose-not-granted", "epsilon-over-per-use-cap", "column-use-not-granted"}


def test_identity_column_is_never_usable_even_if_granted(authority: Authority) -> None:
    d = authority.decide(query(columns=(ColumnRef(name="id_card_number", use="group_by"),)))
    assert not d.permit
    assert codes(d) == {"identity-column-never-usable"}
    assert "id_card_number" in d.reasons[0].message


def test_core_data_never_leaves(tmp_path: Path) -> None:
    a = Authority(tmp_path, clock=lambda: NOW)
    a.register_dataset(tax_dataset(level="core"))
    a.create_grant(credit_grant())
    d = a.decide(query())
    assert codes(d) == {"core-data-never-leaves"}


def test_training_needs_an_approved_model(authority: Authority) -> None:
    train = query(action=Action.TRAIN, model="logreg-v1")
    assert authority.decide(train).permit
    d = authority.decide(query(action=Action.TRAIN, model="gpt-huge"))
    assert codes(d) == {"model-not-approved"}


def test_action_not_granted(tmp_path: Path) -> None:
    a = Authority(tmp_path, clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant(actions=frozenset({Action.QUERY}), models=frozenset()))
    d = a.decide(query(action=Action.TRAIN, model="logreg-v1"))
    assert codes(d) == {"action-not-granted", "model-not-approved"}


def test_unregistered_dataset_is_denied(authority: Authority) -> None:
    assert codes(authority.decide(query(dataset="health"))) == {"dataset-not-registered"}


def test_budget_check_denies_with_the_account_that_is_short(authority: Authority) -> None:
    for _ in range(6):
        d = authority.decide(query(epsilon=0.5))
        assert d.permit
        authority.commit(authority.reserve(d), b"result")
    d = authority.decide(query(epsilon=0.5))
    assert not d.permit
    assert codes(d) == {"budget-exhausted"}
    assert "grant:g-credit:tax has epsilon 0 left of 3" in d.reasons[0].message


def test_decisions_are_logged(authority: Authority) -> None:
    d = authority.decide(query(purpose="marketing"))
    entry = authority.log.search(kind="decision")[-1]
    assert entry["index"] == d.log_index
    assert entry["decision"] == "deny"
    assert entry["reasons"][0]["code"] == "purpose-not-granted"
    assert authority.log.search(kind="request")[-1]["request_digest"] == d.request_digest


def test_engine_sees_grants_created_by_another_process_handle(authority: Authority) -> None:
    other = Registry(authority.registry.path)
    other.create_grant(credit_grant(grant_id="g-2", firm="beta"))
    authority.ledger.open_account(grant_account("g-2", "tax"), 1.0, 1e-6)
    assert authority.decide(query(firm="beta")).permit


def test_malformed_request_is_refused_before_anything_is_logged(authority: Authority) -> None:
    size = authority.log.size
    with pytest.raises(ValueError, match="epsilon must be at least"):
        query(epsilon=-1)
    with pytest.raises(ValueError, match="must name its model"):
        query(action=Action.TRAIN)
    assert authority.log.size == size
