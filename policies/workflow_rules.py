"""The checks of the access-request workflow (:mod:`policies.workflow`): names and reasons,
what a dataset's policy can allow, which reviews a department may answer, and when a request
can still be answered. Pure functions over the stored values; no database access."""

from __future__ import annotations

from typing import Any

from policies.bounds import check_delta, check_text
from policies.datasets import DatasetPolicy
from policies.errors import InvalidRequestError, RequestStateError, ReviewPermissionError
from policies.grants import ColumnRule, DatasetTerms
from policies.workflow_store import (
    MAX_NAME,
    MAX_REASON,
    AccessRequest,
    RequestState,
    Review,
    ReviewDecision,
)

#: The answers that count as a dataset's approval.
APPROVING = (ReviewDecision.APPROVED, ReviewDecision.AMENDED)


def grant_id_for(request_id: str) -> str:
    """The id of the grant issued for a request."""
    return f"g-{request_id}"


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{what} must be a non-empty name")
    return check_text(value, what, MAX_NAME)


def check_reason(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"give a {what}: the firm sees it")
    return check_text(value, what, MAX_REASON)


def fits_policy(name: str, terms: DatasetTerms, policy: DatasetPolicy) -> None:
    """Refuse what the dataset's own policy can never allow."""
    for column, rule in terms.columns.items():
        if column in policy.identity_columns and rule is not ColumnRule.NEVER:
            raise InvalidRequestError(
                f"column {column!r} of dataset {name!r} is an identity column and never "
                "usable; drop it from the request"
            )
    if terms.epsilon > policy.epsilon_cap:
        raise InvalidRequestError(
            f"epsilon {terms.epsilon:g} for dataset {name!r} exceeds its total cap "
            f"{policy.epsilon_cap:g}; ask for less"
        )
    check_delta(terms.delta, f"delta for dataset {name!r}", max_delta=policy.delta_cap)


def unknown_request(request_id: str) -> str:
    return f"no access request {request_id!r}; list your requests to see valid ids"


def owned_reviews(request: AccessRequest, department: str, dataset: str | None) -> list[Review]:
    """The reviews of ``department`` in the request (one if ``dataset`` is named)."""
    if dataset is not None:
        match = [r for r in request.reviews if r.dataset == dataset]
        if not match:
            raise InvalidRequestError(
                f"access request {request.request_id} does not ask for dataset {dataset!r}"
            )
        if match[0].department != department:
            raise ReviewPermissionError(
                f"dataset {dataset!r} belongs to {match[0].department}, not {department}; "
                "a department answers only for its own datasets"
            )
        return match
    mine = [r for r in request.reviews if r.department == department]
    if not mine:
        raise ReviewPermissionError(
            f"access request {request.request_id} asks for no dataset of {department}; "
            "a department answers only for its own datasets"
        )
    return mine


def must_be_pending(request: AccessRequest, now_ms: int) -> None:
    """Refuse an answer on a request that is closed or ran past its validity."""
    if request.state is RequestState.PENDING:
        if request.terms.valid_until.timestamp() * 1000 <= now_ms:
            raise RequestStateError(
                f"access request {request.request_id} ran past its valid_until before "
                "every department answered; the firm must submit a new request"
            )
        return
    detail = f" as grant {request.grant_id}" if request.grant_id else ""
    why = "; ".join(request.reasons)
    raise RequestStateError(
        f"access request {request.request_id} is already {request.state.value}{detail}"
        + (f" ({why})" if why else "")
        + "; nothing more can be decided on it"
    )


def undecided(request_id: str, targets: list[Review]) -> list[Review]:
    done = [r for r in targets if r.decision is not ReviewDecision.PENDING]
    if done:
        r = done[0]
        raise RequestStateError(
            f"dataset {r.dataset!r} of access request {request_id} was already "
            f"{r.decision.value} by {r.department}; a department's answer is final"
        )
    return targets
