"""The values and tables of the access-request workflow (事前审批): what a firm asks for,
how a department narrows it, each department's review, and the request as it stands.

:class:`AccessTerms` holds exactly the grant fields a firm proposes (the authority adds the
id, the firm and the approvers); :class:`Amendment` is a narrowing a department makes, never
a widening; :class:`AccessRequest` is a stored request with its reviews. The tables live in
the authority's ``state.db``; :mod:`policies.workflow` writes them, each change in one
transaction with its log entry.

>>> from datetime import UTC, datetime
>>> from policies.grants import ColumnRule, DatasetTerms
>>> terms = AccessTerms(purpose="credit", legal_basis="PIPL 13(1)", actions={"query"},
...     epsilon_per_use=0.5, min_group_size=10,
...     valid_from=datetime(2026, 1, 1, tzinfo=UTC), valid_until=datetime(2027, 1, 1, tzinfo=UTC),
...     datasets={"tax": DatasetTerms(epsilon=2, delta=1e-7,
...                                   columns={"income": ColumnRule.AGGREGATE_ONLY})})
>>> Amendment(epsilon=1.0).apply(terms, "tax").datasets["tax"].epsilon
1.0
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.bounds import MAX_GROUP_SIZE, check_all_text, check_delta, check_epsilon
from policies.errors import InvalidRequestError
from policies.grants import Action, DatasetTerms, aware, check_terms
from policies.parsing import parse_model

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_requests (
    request_id TEXT PRIMARY KEY, firm TEXT NOT NULL, state TEXT NOT NULL,
    requested TEXT NOT NULL, terms TEXT NOT NULL, grant_id TEXT,
    submitted_ms INTEGER NOT NULL, log_index INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS access_requests_firm ON access_requests (firm, submitted_ms);
CREATE INDEX IF NOT EXISTS access_requests_state ON access_requests (state);
CREATE TABLE IF NOT EXISTS access_reviews (
    request_id TEXT NOT NULL, dataset TEXT NOT NULL, department TEXT NOT NULL,
    decision TEXT NOT NULL, reviewer TEXT, reason TEXT, amendment TEXT,
    decided_ms INTEGER, log_index INTEGER, PRIMARY KEY (request_id, dataset));
CREATE INDEX IF NOT EXISTS access_reviews_department ON access_reviews (department, decision)
"""

#: Longest name of a firm, department or reviewer, and longest reason or note.
MAX_NAME = 200
MAX_REASON = 2000
#: Most datasets in one request (the approvers, named in the grant, must fit its text limit).
MAX_DATASETS = 20


class RequestState(StrEnum):
    PENDING = "pending"  # waiting for at least one department
    APPROVED = "approved"  # every department approved; the grant is being issued
    GRANTED = "granted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class ReviewDecision(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    AMENDED = "amended"  # approved with narrower terms
    REFUSED = "refused"


class AccessTerms(BaseModel):
    """What a firm asks for: a grant without its id, firm and approvers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        return check_all_text(data, "access request")

    datasets: dict[str, DatasetTerms] = Field(min_length=1, max_length=MAX_DATASETS)
    purpose: str = Field(min_length=1, max_length=MAX_REASON)
    legal_basis: str = Field(min_length=1, max_length=MAX_REASON)
    actions: frozenset[Action] = Field(min_length=1)
    epsilon_per_use: float
    min_group_size: int = Field(ge=1, le=MAX_GROUP_SIZE)
    models: frozenset[str] = frozenset()
    valid_from: datetime
    valid_until: datetime

    @field_validator("epsilon_per_use")
    @classmethod
    def _epsilon_per_use(cls, value: float) -> float:
        return check_epsilon(value, "epsilon_per_use")

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)

    @model_validator(mode="after")
    def _consistent(self) -> AccessTerms:
        check_terms(self, "a request to train must list the models to approve")
        return self

    @classmethod
    def parse(cls, data: Any) -> AccessTerms:
        """Terms from a mapping or JSON text; ``InvalidRequestError`` names the first problem."""
        return parse_model(cls, data, "access request")


class Amendment(BaseModel):
    """What a department narrows before it approves; unset fields stay as they are.

    ``columns``, ``epsilon`` and ``delta`` concern the dataset amended; the other fields the
    whole request. Amendments only narrow (a column dropped or given a rule allowing fewer
    uses, a smaller budget, an earlier end, fewer actions or models, larger groups), so the
    approvals already given stay valid.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        return check_all_text(data, "amendment")

    columns: dict[str, Any] | None = None
    epsilon: float | None = None
    delta: float | None = None
    valid_until: datetime | None = None
    epsilon_per_use: float | None = None
    min_group_size: int | None = Field(default=None, ge=1, le=MAX_GROUP_SIZE)
    actions: frozenset[Action] | None = None
    models: frozenset[str] | None = None

    @field_validator("epsilon", "epsilon_per_use")
    @classmethod
    def _eps(cls, value: float | None) -> float | None:
        return None if value is None else check_epsilon(value)

    @field_validator("delta")
    @classmethod
    def _delta(cls, value: float | None) -> float | None:
        return None if value is None else check_delta(value)

    @field_validator("valid_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else AccessTerms._aware(value)

    def changes(self) -> dict[str, Any]:
        """The fields set, as JSON (what the log records)."""
        return self.model_dump(mode="json", exclude_none=True)

    def apply(self, terms: AccessTerms, dataset: str) -> AccessTerms:
        """``terms`` narrowed for ``dataset``; ``InvalidRequestError`` if anything widens."""
        if not self.changes():
            raise InvalidRequestError("the amendment changes nothing; approve instead")
        old = terms.datasets[dataset]
        data = terms.model_dump()
        new_dataset = old.model_dump()
        if self.columns is not None:
            rules = DatasetTerms(epsilon=old.epsilon, delta=old.delta, columns=self.columns)
            for column, rule in rules.columns.items():
                if column not in old.columns:
                    raise InvalidRequestError(
                        f"column {column!r} was not requested for dataset {dataset!r}; an "
                        "amendment can only drop columns or narrow their rules"
                    )
                if not rule.uses <= old.columns[column].uses:
                    raise InvalidRequestError(
                        f"rule {rule.value!r} for column {column!r} allows more than the "
                        f"requested {old.columns[column].value!r}; an amendment only narrows"
                    )
            new_dataset["columns"] = rules.columns
        for name, value, bigger_is_wider in (
            ("epsilon", self.epsilon, True),
            ("delta", self.delta, True),
        ):
            if value is not None:
                _narrower(name, value, new_dataset[name], bigger_is_wider)
                new_dataset[name] = value
        data["datasets"] = {**data["datasets"], dataset: new_dataset}
        whole: tuple[tuple[str, Any, bool], ...] = (
            ("valid_until", self.valid_until, True),
            ("epsilon_per_use", self.epsilon_per_use, True),
            ("min_group_size", self.min_group_size, False),
        )
        for field, new, wider in whole:
            if new is not None:
                _narrower(field, new, data[field], wider)
                data[field] = new
        for name, subset in (("actions", self.actions), ("models", self.models)):
            if subset is not None:
                if not subset <= data[name]:
                    raise InvalidRequestError(
                        f"{name} {sorted(subset)} are not all requested; an amendment only "
                        "removes some"
                    )
                data[name] = subset
        return parse_model(AccessTerms, data, "amended request")


def _narrower(name: str, new: Any, old: Any, bigger_is_wider: bool) -> None:
    if (new > old) if bigger_is_wider else (new < old):
        limit = "above" if bigger_is_wider else "below"
        raise InvalidRequestError(
            f"the amended {name} {new} is {limit} the requested {old}; an amendment only narrows"
        )


@dataclass(frozen=True)
class Review:
    """One owning department's answer for one requested dataset."""

    dataset: str
    department: str
    decision: ReviewDecision
    reviewer: str | None = None
    reason: str | None = None
    amendment: dict[str, Any] | None = None
    decided_ms: int | None = None
    log_index: int | None = None


@dataclass(frozen=True)
class AccessRequest:
    """A stored request: what was asked, the terms as amended, each review and the outcome."""

    request_id: str
    firm: str
    state: RequestState
    requested: AccessTerms
    terms: AccessTerms
    reviews: tuple[Review, ...]
    grant_id: str | None
    submitted_ms: int
    log_index: int

    @property
    def waiting_for(self) -> list[str]:
        """Departments that have not answered yet (while the request is pending)."""
        return sorted({r.department for r in self.reviews if r.decision is ReviewDecision.PENDING})

    @property
    def reasons(self) -> list[str]:
        """Every refusal and amendment reason, as the firm sees them."""
        return [
            f"{r.department} {r.decision.value} {r.dataset}: {r.reason}"
            for r in self.reviews
            if r.reason and r.decision in (ReviewDecision.REFUSED, ReviewDecision.AMENDED)
        ]

    @property
    def approvers(self) -> str:
        """Who approved, ``department: reviewer`` once each (the grant's ``approved_by``)."""
        pairs = {
            (r.department, r.reviewer or r.department)
            for r in self.reviews
            if r.decision in (ReviewDecision.APPROVED, ReviewDecision.AMENDED)
        }
        return "; ".join(f"{department}: {reviewer}" for department, reviewer in sorted(pairs))


_COLUMNS = "request_id, firm, state, requested, terms, grant_id, submitted_ms, log_index"
_REVIEW_COLUMNS = (
    "dataset, department, decision, reviewer, reason, amendment, decided_ms, log_index"
)


def read_request(conn: sqlite3.Connection, request_id: str) -> AccessRequest | None:
    """The stored request, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM access_requests WHERE request_id = ?", (request_id,)
    ).fetchone()
    return None if row is None else _request(conn, row)


def read_requests(
    conn: sqlite3.Connection, where: str, args: tuple[Any, ...]
) -> list[AccessRequest]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM access_requests WHERE {where} ORDER BY submitted_ms, request_id",
        args,
    ).fetchall()
    return [_request(conn, row) for row in rows]


def _request(conn: sqlite3.Connection, row: tuple[Any, ...]) -> AccessRequest:
    request_id, firm, state, requested, terms, grant_id, submitted_ms, log_index = row
    reviews = tuple(
        Review(
            dataset,
            department,
            ReviewDecision(decision),
            reviewer,
            reason,
            None if amendment is None else json.loads(amendment),
            decided_ms,
            index,
        )
        for dataset, department, decision, reviewer, reason, amendment, decided_ms, index in (
            conn.execute(
                f"SELECT {_REVIEW_COLUMNS} FROM access_reviews WHERE request_id = ? "
                "ORDER BY dataset",
                (request_id,),
            )
        )
    )
    return AccessRequest(
        request_id,
        firm,
        RequestState(state),
        AccessTerms.model_validate_json(requested),
        AccessTerms.model_validate_json(terms),
        reviews,
        grant_id,
        submitted_ms,
        log_index,
    )
