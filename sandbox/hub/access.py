"""Access requests at the hub: ``FirmService.RequestAccess`` and the conversions between the
workflow's values (``policies.workflow``) and the ``sandbox.v1`` messages.

A firm submits :class:`~policies.workflow.AccessTerms`; the firm's name is the caller's verified
credential, never a request field. The request then waits for each owning department
(``DepartmentService`` in :mod:`sandbox.hub.department`). One :class:`Workflow` per
:class:`~policies.Authority` is shared by both services (:func:`workflow_for`).

>>> terms_from_pb(pb.AccessTerms(actions=[pb.ACTION_QUERY], valid_until_ms=0))["actions"]
['query']
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from policies.authority import Authority
from policies.errors import InvalidRequestError, UnknownGrantError
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from policies.workflow import AccessRequest, AccessTerms, RequestState, ReviewDecision, Workflow
from sandbox.credentials import Principal
from sandbox.protocol.v1 import sandbox_pb2 as pb

_WORKFLOWS: weakref.WeakKeyDictionary[Authority, Workflow] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()

_ACTIONS = {pb.ACTION_QUERY: Action.QUERY, pb.ACTION_TRAIN: Action.TRAIN}
_RULES = {
    pb.COLUMN_RULE_NEVER: ColumnRule.NEVER,
    pb.COLUMN_RULE_FILTER_ONLY: ColumnRule.FILTER_ONLY,
    pb.COLUMN_RULE_GROUP_BY: ColumnRule.GROUP_BY,
    pb.COLUMN_RULE_AGGREGATE_ONLY: ColumnRule.AGGREGATE_ONLY,
}
_STATES = {
    RequestState.PENDING: pb.REQUEST_STATE_PENDING,
    RequestState.APPROVED: pb.REQUEST_STATE_PENDING,  # the moment before the grant is issued
    RequestState.REFUSED: pb.REQUEST_STATE_REFUSED,
    RequestState.GRANTED: pb.REQUEST_STATE_GRANTED,
    RequestState.WITHDRAWN: pb.REQUEST_STATE_WITHDRAWN,
}
_DECISIONS = {
    ReviewDecision.PENDING: pb.REVIEW_DECISION_PENDING,
    ReviewDecision.APPROVED: pb.REVIEW_DECISION_APPROVED,
    ReviewDecision.REFUSED: pb.REVIEW_DECISION_REFUSED,
    ReviewDecision.AMENDED: pb.REVIEW_DECISION_AMENDED,
}


def workflow_for(authority: Authority) -> Workflow:
    """The one :class:`Workflow` over ``authority`` (created on first use)."""
    with _LOCK:
        workflow = _WORKFLOWS.get(authority)
        if workflow is None:
            workflow = _WORKFLOWS[authority] = Workflow(authority)
        return workflow


# -- from the wire --------------------------------------------------------------------------


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def columns_from_pb(columns: Any) -> dict[str, str]:
    """A ``map<string, ColumnRule>`` as the workflow's column rules."""
    out: dict[str, str] = {}
    for name, rule in columns.items():
        if rule not in _RULES:
            raise InvalidRequestError(
                f"column {name!r} has no rule; use never, filter_only, group_by or aggregate_only"
            )
        out[name] = _RULES[rule].value
    return out


def dataset_terms_from_pb(terms: pb.DatasetTerms) -> dict[str, Any]:
    return {
        "epsilon": terms.epsilon,
        "delta": terms.delta,
        "columns": columns_from_pb(terms.columns),
    }


def terms_from_pb(terms: pb.AccessTerms) -> dict[str, Any]:
    """``AccessTerms`` as the mapping :meth:`AccessTerms.parse` checks (times are UTC)."""
    actions = []
    for action in terms.actions:
        if action not in _ACTIONS:
            raise InvalidRequestError("an action is unspecified; use ACTION_QUERY or ACTION_TRAIN")
        actions.append(_ACTIONS[action].value)
    return {
        "datasets": {n: dataset_terms_from_pb(t) for n, t in terms.datasets.items()},
        "purpose": terms.purpose,
        "legal_basis": terms.legal_basis,
        "actions": actions,
        "epsilon_per_use": terms.epsilon_per_use,
        "min_group_size": terms.min_group_size,
        "models": list(terms.models),
        "valid_from": _ms(terms.valid_from_ms),
        "valid_until": _ms(terms.valid_until_ms),
    }


# -- to the wire ----------------------------------------------------------------------------


class _Terms(Protocol):
    """What :class:`AccessTerms` and :class:`Grant` have in common."""

    @property
    def datasets(self) -> dict[str, DatasetTerms]: ...
    @property
    def purpose(self) -> str: ...
    @property
    def legal_basis(self) -> str: ...
    @property
    def actions(self) -> frozenset[Action]: ...
    @property
    def epsilon_per_use(self) -> float: ...
    @property
    def min_group_size(self) -> int: ...
    @property
    def models(self) -> frozenset[str]: ...
    @property
    def valid_from(self) -> datetime: ...
    @property
    def valid_until(self) -> datetime: ...


def _rule_pb(rule: Any) -> pb.ColumnRule:
    return next(k for k, v in _RULES.items() if v == ColumnRule(rule))


def dataset_terms_pb(terms: DatasetTerms | dict[str, Any]) -> pb.DatasetTerms:
    if isinstance(terms, dict):
        terms = DatasetTerms.model_validate(terms)
    return pb.DatasetTerms(
        epsilon=terms.epsilon,
        delta=terms.delta,
        columns={name: _rule_pb(rule) for name, rule in terms.columns.items()},
    )


def terms_pb(terms: _Terms) -> pb.AccessTerms:
    """Access terms (or a grant's terms) as ``AccessTerms``."""
    by_action = {v: k for k, v in _ACTIONS.items()}
    return pb.AccessTerms(
        datasets={n: dataset_terms_pb(t) for n, t in terms.datasets.items()},
        purpose=terms.purpose,
        legal_basis=terms.legal_basis,
        actions=[by_action[a] for a in sorted(terms.actions)],
        epsilon_per_use=terms.epsilon_per_use,
        min_group_size=terms.min_group_size,
        models=sorted(terms.models),
        valid_from_ms=int(terms.valid_from.timestamp() * 1000),
        valid_until_ms=int(terms.valid_until.timestamp() * 1000),
    )


def grant_pb(grant: Grant) -> pb.Grant:
    out = pb.Grant(
        grant_id=grant.grant_id,
        firm=grant.firm,
        terms=terms_pb(grant),
        approved_by=grant.approved_by,
        version=grant.version,
        revoked=grant.revoked,
    )
    if grant.revoked_by is not None:
        out.revoked_by = grant.revoked_by
    if grant.revoked_reason is not None:
        out.revoked_reason = grant.revoked_reason
    return out


def access_request_pb(request: AccessRequest, grant: Grant | None = None) -> pb.AccessRequest:
    """A stored request as ``AccessRequest``: the (amended) terms, every review with its
    reason (what the firm sees) and the grant once issued."""
    out = pb.AccessRequest(
        request_id=request.request_id,
        firm=request.firm,
        terms=terms_pb(request.terms),
        state=_STATES[request.state],
        submitted_ms=request.submitted_ms,
        log_index=request.log_index,
    )
    for review in request.reviews:
        item = out.reviews.add(
            department=review.department,
            dataset=review.dataset,
            decision=_DECISIONS[review.decision],
            reason=review.reason or "",
            reviewer=review.reviewer or "",
            decided_ms=review.decided_ms or 0,
        )
        if review.decision is ReviewDecision.AMENDED:
            item.amended_terms.CopyFrom(dataset_terms_pb(request.terms.datasets[review.dataset]))
        if review.log_index is not None:
            item.log_index = review.log_index
    if grant is not None:
        out.grant.CopyFrom(grant_pb(grant))
    return out


def request_with_grant(authority: Authority, request: AccessRequest) -> pb.AccessRequest:
    """:func:`access_request_pb` with the issued grant looked up."""
    grant = None
    if request.grant_id is not None:
        try:
            grant = authority.registry.grant(request.grant_id)
        except UnknownGrantError:
            grant = None
    return access_request_pb(request, grant)


def requests_pb(authority: Authority, requests: Iterable[AccessRequest]) -> list[pb.AccessRequest]:
    return [request_with_grant(authority, r) for r in requests]


# -- FirmService.RequestAccess --------------------------------------------------------------


def request_access(
    authority: Authority, firm: Principal, request: pb.RequestAccessRequest
) -> pb.RequestAccessResponse:
    """Submit the terms for the authenticated ``firm``; the request waits for the departments
    that own its datasets. ``InvalidRequestError`` (nothing stored) names the first problem."""
    if not request.HasField("terms"):
        raise InvalidRequestError("send the access terms (datasets, purpose, validity, ...)")
    terms = AccessTerms.parse(terms_from_pb(request.terms))
    stored = workflow_for(authority).submit(firm.name, terms)  # the firm from its credential
    return pb.RequestAccessResponse(request=access_request_pb(stored))


# -- FirmService.ListAccessRequests / WithdrawRequest --------------------------------------


def list_requests(authority: Authority, firm: Principal) -> pb.ListAccessRequestsResponse:
    """Every access request of the authenticated ``firm``, oldest first, with its reviews,
    the departments' reasons and the grant once issued."""
    mine = workflow_for(authority).requests_of(firm.name)
    return pb.ListAccessRequestsResponse(requests=requests_pb(authority, mine))


def withdraw_request(
    authority: Authority, firm: Principal, request: pb.WithdrawRequestRequest
) -> pb.RequestAccessResponse:
    """The authenticated ``firm`` takes back its pending request (logged). Another firm's
    request is unknown to it (``INVALID_ARGUMENT``, as for an unknown id); a decided one is
    ``FAILED_PRECONDITION``."""
    if not request.request_id:
        raise InvalidRequestError("name the request to withdraw; ListAccessRequests shows yours")
    done = workflow_for(authority).withdraw(request.request_id, firm.name)
    return pb.RequestAccessResponse(request=request_with_grant(authority, done))
