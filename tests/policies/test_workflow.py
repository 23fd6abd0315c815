"""The request -> approval workflow (事前审批) on a real SQLite state directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from policy_helpers import NOW, query, tax_dataset

from policies import Authority, ColumnRule, Grant, verify_export
from policies.errors import (
    InvalidRequestError,
    PrivacyParameterError,
    RequestStateError,
    ReviewPermissionError,
    StateError,
    UnknownAccessRequestError,
    UnknownGrantError,
)
from policies.workflow import (
    AccessTerms,
    Amendment,
    RequestState,
    ReviewDecision,
    Workflow,
    grant_id_for,
)

TAX, SOCIAL = "税务局", "人社局"


def terms(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "purpose": "credit-risk-statistics",
        "legal_basis": "个人信息保护法 第十三条",
        "actions": ["query"],
        "epsilon_per_use": 0.5,
        "min_group_size": 20,
        "valid_from": "2026-05-01T00:00:00+00:00",
        "valid_until": "2027-01-01T00:00:00+00:00",
        "datasets": {
            "tax": {
                "epsilon": 3.0,
                "delta": 1e-7,
                "columns": {"income": "aggregate_only", "region": "group_by", "age": "filter_only"},
            },
            "social": {
                "epsilon": 2.0,
                "delta": 1e-7,
                "columns": {"contribution": "aggregate_only"},
            },
        },
    }
    fields.update(overrides)
    return fields


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.register_dataset(tax_dataset(dataset_id="social", department=SOCIAL))
    return a


@pytest.fixture
def workflow(authority: Authority) -> Workflow:
    return Workflow(authority, clock=lambda: NOW)


def kinds(authority: Authority) -> list[str]:
    return [json.loads(line)["kind"] for line in authority.log.entries()]


def assert_log_verifies(authority: Authority, tmp_path: Path) -> None:
    authority.export(tmp_path / "log.jsonl")
    verified = verify_export(tmp_path / "log.jsonl", authority.public_key)
    assert verified.size == authority.log.size


def test_two_departments_approve_then_the_grant_is_issued(
    authority: Authority, workflow: Workflow, tmp_path: Path
) -> None:
    request = workflow.submit("acme", terms())
    assert request.state is RequestState.PENDING
    assert request.waiting_for == sorted([TAX, SOCIAL])
    assert [r.request_id for r in workflow.pending(TAX)] == [request.request_id]
    assert [r.request_id for r in workflow.pending(SOCIAL)] == [request.request_id]

    after_tax = workflow.approve(request.request_id, TAX, reviewer="王芳")
    assert after_tax.state is RequestState.PENDING and after_tax.waiting_for == [SOCIAL]
    assert workflow.pending(TAX) == []
    with pytest.raises(UnknownGrantError):  # no grant before every department approved
        authority.registry.grant(grant_id_for(request.request_id))

    done = workflow.approve(request.request_id, SOCIAL, reviewer="李伟", note="ok")
    assert done.state is RequestState.GRANTED
    assert done.grant_id == grant_id_for(request.request_id)
    grant = authority.registry.grant(done.grant_id)
    assert grant.firm == "acme" and set(grant.datasets) == {"tax", "social"}
    assert grant.approved_by == f"{SOCIAL}: 李伟; {TAX}: 王芳"
    assert workflow.pending(SOCIAL) == []
    # the grant works: a query under it is permitted
    assert authority.decide(query(firm="acme", epsilon=0.5)).permit

    entries = [json.loads(line) for line in authority.log.entries()]
    steps = [e for e in entries if e["kind"].startswith("access_") or e["kind"] == "grant"]
    assert [e["kind"] for e in steps] == [
        "access_request",
        "access_review",
        "access_review",
        "grant",
        "access_outcome",
    ]
    assert [e.get("reviewer") for e in steps[1:3]] == ["王芳", "李伟"]
    assert steps[-1]["state"] == "granted" and steps[-1]["grant_id"] == done.grant_id
    assert_log_verifies(authority, tmp_path)
    # a restart finds nothing left to issue
    assert Workflow(authority, clock=lambda: NOW).get(request.request_id).state == "granted"


def test_a_refusal_reaches_the_firm_and_no_grant_is_issued(
    authority: Authority, workflow: Workflow, tmp_path: Path
) -> None:
    request = workflow.submit("acme", terms())
    workflow.approve(request.request_id, SOCIAL)
    reason = "column age may not be used to filter for credit scoring"
    refused = workflow.refuse(request.request_id, TAX, reason, dataset="tax", reviewer="王芳")
    assert refused.state is RequestState.REFUSED
    [mine] = workflow.requests_of("acme")
    assert mine.state is RequestState.REFUSED
    assert mine.reasons == [f"{TAX} refused tax: {reason}"]
    assert mine.grant_id is None
    assert authority.registry.grants() == []
    assert workflow.pending(TAX) == [] and workflow.pending(SOCIAL) == []
    with pytest.raises(RequestStateError, match="already refused"):
        workflow.approve(request.request_id, TAX)
    outcome = authority.log.search(kind="access_outcome")[-1]
    assert outcome["state"] == "refused" and reason in outcome["reasons"][0]
    assert_log_verifies(authority, tmp_path)


def test_an_amendment_is_what_the_grant_holds(authority: Authority, workflow: Workflow) -> None:
    request = workflow.submit("acme", terms())
    amended = workflow.amend(
        request.request_id,
        TAX,
        "tax",
        {
            "columns": {"income": "aggregate_only", "region": "group_by"},  # age dropped
            "epsilon": 1.5,
            "valid_until": "2026-09-01T00:00:00+00:00",
        },
        "age is not shared; a smaller budget and a shorter term",
    )
    assert amended.state is RequestState.PENDING
    assert amended.requested.datasets["tax"].epsilon == 3.0  # what was asked is kept
    assert {r.dataset: r.decision for r in amended.reviews}["tax"] is ReviewDecision.AMENDED
    assert amended.reasons == [
        f"{TAX} amended tax: age is not shared; a smaller budget and a shorter term"
    ]
    granted = workflow.approve(request.request_id, SOCIAL)
    assert granted.state is RequestState.GRANTED
    assert granted.grant_id is not None
    grant = authority.registry.grant(granted.grant_id)
    assert grant.datasets["tax"].epsilon == 1.5
    assert set(grant.datasets["tax"].columns) == {"income", "region"}
    assert grant.valid_until == datetime(2026, 9, 1, tzinfo=UTC)
    assert grant.datasets["social"].epsilon == 2.0
    assert authority.remaining(granted.grant_id, "tax").epsilon == pytest.approx(1.5)
    review = authority.log.search(kind="access_review", dataset="tax")[0]
    assert review["answer"] == "amended" and review["amendment"]["epsilon"] == 1.5


@pytest.mark.parametrize(
    ("amendment", "message"),
    [
        ({"epsilon": 4.0}, "above the requested"),
        ({"columns": {"income": "group_by"}}, "allows more than"),
        ({"columns": {"name": "aggregate_only"}}, "was not requested"),
        ({"min_group_size": 5}, "below the requested"),
        ({"actions": ["query", "train"]}, "not all requested"),
        ({"epsilon": 0.1}, "lower epsilon_per_use"),
        ({}, "changes nothing"),
        ({"valid_until": "2026-09-01T00:00:00"}, "time zone"),
    ],
)
def test_an_amendment_only_narrows(workflow: Workflow, amendment: Any, message: str) -> None:
    request = workflow.submit("acme", terms())
    with pytest.raises(InvalidRequestError, match=message):
        workflow.amend(request.request_id, TAX, "tax", amendment, "narrower")
    assert workflow.get(request.request_id).waiting_for == sorted([TAX, SOCIAL])


def test_a_department_acts_only_on_its_own_datasets(
    authority: Authority, workflow: Workflow
) -> None:
    request = workflow.submit("acme", terms())
    size = authority.log.size
    with pytest.raises(ReviewPermissionError, match="belongs to"):
        workflow.approve(request.request_id, SOCIAL, dataset="tax")
    with pytest.raises(ReviewPermissionError, match="belongs to"):
        workflow.refuse(request.request_id, SOCIAL, "no", dataset="tax")
    with pytest.raises(ReviewPermissionError, match="belongs to"):
        workflow.amend(request.request_id, TAX, "social", {"epsilon": 1.0}, "less")
    with pytest.raises(ReviewPermissionError, match="no dataset of"):
        workflow.approve(request.request_id, "公安局")
    with pytest.raises(UnknownAccessRequestError):
        workflow.get(request.request_id, department="公安局")
    with pytest.raises(UnknownAccessRequestError):  # another firm does not see it
        workflow.get(request.request_id, firm="other-bank")
    with pytest.raises(UnknownAccessRequestError):
        workflow.withdraw(request.request_id, "other-bank")
    assert authority.log.size == size  # nothing was logged or changed
    assert workflow.get(request.request_id).waiting_for == sorted([TAX, SOCIAL])


def test_approving_twice_is_idempotent_and_a_decision_is_final(
    authority: Authority, workflow: Workflow
) -> None:
    request = workflow.submit("acme", terms())
    workflow.approve(request.request_id, TAX)
    size = authority.log.size
    again = workflow.approve(request.request_id, TAX)
    assert again.waiting_for == [SOCIAL] and authority.log.size == size
    with pytest.raises(RequestStateError, match="already approved"):
        workflow.refuse(request.request_id, TAX, "changed my mind")
    with pytest.raises(RequestStateError, match="already approved"):
        workflow.amend(request.request_id, TAX, "tax", {"epsilon": 1.0}, "less")
    granted = workflow.approve(request.request_id, SOCIAL)
    size = authority.log.size
    assert workflow.approve(request.request_id, SOCIAL).grant_id == granted.grant_id
    assert authority.log.size == size and len(authority.registry.grants()) == 1


def test_submission_is_validated_against_the_datasets_and_the_bounds(
    workflow: Workflow, authority: Authority
) -> None:
    size = authority.log.size

    def only(dataset: dict[str, Any]) -> dict[str, Any]:
        return terms(epsilon_per_use=0.5, datasets=dataset)

    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        (
            only({"nope": {"epsilon": 1, "delta": 0, "columns": {}}}),
            InvalidRequestError,
            "not registered",
        ),
        (terms() | {"x": 1}, InvalidRequestError, "invalid access request"),
        (
            only(
                {"tax": {"epsilon": 1, "delta": 0, "columns": {"id_card_number": "aggregate_only"}}}
            ),
            InvalidRequestError,
            "identity column",
        ),
        (
            only({"tax": {"epsilon": 50, "delta": 0, "columns": {}}}),
            InvalidRequestError,
            "exceeds its total cap",
        ),
        (
            only({"tax": {"epsilon": 1, "delta": 1e-3, "columns": {}}}),
            PrivacyParameterError,
            "exceeds the maximum",
        ),
        (terms(epsilon_per_use=float("nan")), InvalidRequestError, "finite"),
        (
            terms(valid_from="2026-01-01T00:00:00+00:00", valid_until="2026-02-01T00:00:00+00:00"),
            InvalidRequestError,
            "already passed",
        ),
        (terms(actions=["train"]), InvalidRequestError, "models"),
        (terms(purpose="x\x00"), InvalidRequestError, "NUL"),
    ]
    for fields, error, message in bad:
        with pytest.raises(error, match=message):
            workflow.submit("acme", fields)
    with pytest.raises(InvalidRequestError, match="firm"):
        workflow.submit(" ", terms())
    assert authority.log.size == size and workflow.requests_of("acme") == []


def test_reasons_are_required_and_a_firm_can_withdraw(
    authority: Authority, workflow: Workflow, tmp_path: Path
) -> None:
    request = workflow.submit("acme", terms())
    with pytest.raises(InvalidRequestError, match="reason"):
        workflow.refuse(request.request_id, TAX, "  ")
    withdrawn = workflow.withdraw(request.request_id, "acme", "no longer needed")
    assert withdrawn.state is RequestState.WITHDRAWN
    assert workflow.pending(TAX) == []
    with pytest.raises(RequestStateError, match="already withdrawn"):
        workflow.approve(request.request_id, TAX)
    assert kinds(authority)[-2:] == ["access_request", "access_outcome"]
    assert_log_verifies(authority, tmp_path)


def test_a_request_past_its_validity_can_no_longer_be_approved(authority: Authority) -> None:
    now = [NOW]
    workflow = Workflow(authority, clock=lambda: now[0])
    request = workflow.submit("acme", terms(valid_until="2026-06-02T00:00:00+00:00"))
    now[0] = NOW + 2 * 86400
    with pytest.raises(RequestStateError, match="valid_until"):
        workflow.approve(request.request_id, TAX)
    assert workflow.pending(TAX) == []


def test_a_crash_before_the_grant_is_finished_by_the_next_start(
    authority: Authority, workflow: Workflow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    request = workflow.submit("acme", terms())
    workflow.approve(request.request_id, TAX)

    def crash(grant: object) -> None:
        raise StateError("the state database failed: power cut")

    monkeypatch.setattr(authority, "create_grant", crash)
    with pytest.raises(StateError, match="power cut"):
        workflow.approve(request.request_id, SOCIAL)
    assert workflow.get(request.request_id).state is RequestState.APPROVED
    assert authority.registry.grants() == []
    monkeypatch.undo()

    # then the grant is created, and the process stops before the request is marked granted
    stored = workflow.get(request.request_id)
    grant_id = grant_id_for(request.request_id)
    authority.create_grant(
        Grant(
            grant_id=grant_id,
            firm="acme",
            approved_by=stored.approvers,
            **stored.terms.model_dump(),
        )
    )
    restarted = Workflow(authority, clock=lambda: NOW)
    final = restarted.get(request.request_id)
    assert final.state is RequestState.GRANTED and final.grant_id == grant_id
    assert len(authority.registry.grants()) == 1
    assert kinds(authority).count("access_outcome") == 1
    assert_log_verifies(authority, tmp_path)


def test_terms_parse_from_json_and_amendment_models() -> None:
    parsed = AccessTerms.parse(json.dumps(terms()))
    assert parsed.datasets["tax"].columns["income"] is ColumnRule.AGGREGATE_ONLY
    narrowed = Amendment(models=frozenset()).apply(parsed, "tax")
    assert narrowed.models == frozenset()


def test_approving_again_after_a_crash_issues_the_grant(
    authority: Authority, workflow: Workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = workflow.submit("acme", terms())
    workflow.approve(request.request_id, TAX)
    monkeypatch.setattr(
        authority, "create_grant", lambda grant: (_ for _ in ()).throw(StateError("disk"))
    )
    with pytest.raises(StateError):
        workflow.approve(request.request_id, SOCIAL)
    assert workflow.finish_approved() == []  # still failing: left approved, retried later
    monkeypatch.undo()
    assert workflow.get(request.request_id, firm="acme").state is RequestState.APPROVED
    assert workflow.approve(request.request_id, SOCIAL).state is RequestState.GRANTED
    assert len(authority.registry.grants()) == 1
