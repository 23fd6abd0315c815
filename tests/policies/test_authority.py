"""The authority facade end to end: decide, reserve, release, prove the release is logged."""

from __future__ import annotations

import hashlib
import json

import pytest
from policy_helpers import query

from policies import Authority, InvalidRequestError, ReservationState, merkle
from policies.treehead import verify_tree_head


def test_release_is_logged_with_digest_and_provably_included(authority: Authority) -> None:
    decision = authority.decide(query())
    reservation = authority.reserve(decision)
    released = json.dumps({"mean_income": 5321.7, "ci": [5100.2, 5543.1]}).encode()
    index = authority.commit(reservation, released)
    entry = json.loads(authority.log.entry(index))
    assert entry["kind"] == "release"
    assert entry["release_sha256"] == hashlib.sha256(released).hexdigest()
    assert entry["reservation_id"] == reservation.reservation_id
    assert authority.ledger.reservation(reservation.reservation_id).state == "committed"

    head = authority.tree_head()
    verify_tree_head(head, authority.public_key)
    proof = authority.inclusion_proof(index, head.size)
    leaf = merkle.leaf_hash(authority.log.entry(index))
    merkle.verify_inclusion(index, head.size, leaf, proof, head.root)

    later = authority.decide(query())
    assert later.log_index is not None and later.log_index > index
    newer = authority.tree_head()
    merkle.verify_consistency(
        head.size,
        newer.size,
        head.root,
        newer.root,
        authority.consistency_proof(head.size, newer.size),
    )


def test_every_step_is_an_entry(authority: Authority) -> None:
    d = authority.decide(query())
    r = authority.reserve(d)
    authority.refund(r)
    kinds = [e["kind"] for e in authority.log.search(limit=100)]
    assert kinds == ["policy", "dataset", "grant", "request", "decision", "reservation", "refund"]
    assert authority.ledger.reservation(r.reservation_id).state == ReservationState.REFUNDED
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(3.0)


def test_a_deny_cannot_be_reserved(authority: Authority) -> None:
    d = authority.decide(query(purpose="marketing"))
    size = authority.log.size
    with pytest.raises(InvalidRequestError, match="only a permit"):
        authority.reserve(d)
    assert authority.log.size == size


def test_reopening_does_not_relog_unchanged_rules(authority: Authority) -> None:
    again = Authority(authority.state_dir)
    assert len(again.log.search(kind="policy")) == 1


def test_grant_for_unregistered_dataset_is_refused(authority: Authority) -> None:
    from policy_helpers import credit_grant

    from policies import DatasetTerms

    grant = credit_grant(
        grant_id="g-x", datasets={"health": DatasetTerms(epsilon=1, delta=0, columns={})}
    )
    with pytest.raises(InvalidRequestError, match="not registered"):
        authority.create_grant(grant)
    assert [g.grant_id for g in authority.registry.grants()] == ["g-credit"]


def test_ledger_replays_from_the_log_after_every_kind_of_change(authority: Authority) -> None:
    from policy_helpers import tax_dataset

    from policies import GrantRevokedError
    from policies.authority import ledger_differences

    authority.commit(authority.reserve(authority.decide(query())), b"basic")
    authority.refund(authority.reserve(authority.decide(query(epsilon=0.25))))
    gaussian = authority.reserve(authority.decide(query(epsilon=0.1, delta=5e-8, rho=0.01)))
    authority.commit(gaussian, b"gaussian")
    pending = authority.reserve(authority.decide(query(epsilon=0.2)))
    authority.register_dataset(tax_dataset(epsilon_cap=9.0))  # a cap changed: logged too
    withheld = authority.reserve(authority.decide(query(epsilon=0.1)))
    authority.revoke_grant("g-credit", "王芳", "done")
    with pytest.raises(GrantRevokedError):
        authority.commit(withheld, b"late")
    assert ledger_differences(authority.db) == []
    again = Authority(authority.state_dir)  # the start-up check passes
    assert again.ledger.reservation(pending.reservation_id).state == ReservationState.RESERVED
    assert again.ledger.reservation(withheld.reservation_id).state == ReservationState.WITHHELD
    assert again.ledger.audit() == []


def test_grants_and_policies_parse_from_files(tmp_path, authority: Authority) -> None:
    from policy_helpers import credit_grant

    from policies import DatasetPolicy, Grant, load_dataset_policy_file, load_grant_file

    grant = credit_grant(grant_id="g-file")
    path = tmp_path / "grant.json"
    path.write_text(grant.model_dump_json())
    assert load_grant_file(path) == grant
    yaml_path = tmp_path / "grant.yaml"
    yaml_path.write_text(grant.model_dump_json())  # JSON is YAML
    assert load_grant_file(yaml_path) == grant
    assert Grant.parse(grant.model_dump(mode="json")) == grant
    policy = authority.registry.dataset("tax")
    policy_path = tmp_path / "tax.json"
    policy_path.write_text(policy.model_dump_json())
    assert load_dataset_policy_file(policy_path) == policy
    with pytest.raises(InvalidRequestError, match="delta_cap"):
        DatasetPolicy.parse({**policy.model_dump(mode="json"), "delta_cap": 0.5 + 0.5})
