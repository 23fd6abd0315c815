"""Grants: explicit, purpose-bound permissions for one firm to use named datasets.

A grant fixes the firm, the datasets and, per dataset, the total (epsilon, delta) budget and
what may be done with each column (in the spirit of SCQL's column control list), the
purpose and its legal basis, the allowed actions, a per-use epsilon cap, the minimum group
size of released groups, the models approved for training, a validity window, and the
department official who approved it. Grants are immutable values; the registry versions them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.bounds import MAX_GROUP_SIZE, check_all_text, check_delta, check_epsilon
from policies.errors import InvalidRequestError
from policies.parsing import load_document, parse_model


class Action(StrEnum):
    QUERY = "query"
    TRAIN = "train"


class ColumnUse(StrEnum):
    """How a request uses a column. Training features and labels are ``aggregate`` uses."""

    FILTER = "filter"
    GROUP_BY = "group_by"
    AGGREGATE = "aggregate"


class ColumnRule(StrEnum):
    """What a grant lets a firm do with one column."""

    NEVER = "never"
    FILTER_ONLY = "filter_only"
    GROUP_BY = "group_by"
    AGGREGATE_ONLY = "aggregate_only"

    @property
    def uses(self) -> frozenset[ColumnUse]:
        return _RULE_USES[self]


_RULE_USES: dict[ColumnRule, frozenset[ColumnUse]] = {
    ColumnRule.NEVER: frozenset(),
    ColumnRule.FILTER_ONLY: frozenset({ColumnUse.FILTER}),
    ColumnRule.GROUP_BY: frozenset({ColumnUse.GROUP_BY, ColumnUse.FILTER}),
    ColumnRule.AGGREGATE_ONLY: frozenset({ColumnUse.AGGREGATE}),
}


class DatasetTerms(BaseModel):
    """The budget and column rules a grant sets for one dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(description="total epsilon this grant may spend here")
    delta: float = Field(description="total delta this grant may spend here")
    columns: dict[str, ColumnRule] = Field(
        description="every column the firm may touch; unlisted columns are never usable"
    )

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, value: float) -> float:
        return check_epsilon(value)

    @field_validator("delta")
    @classmethod
    def _delta(cls, value: float) -> float:
        return check_delta(value)


class _Terms(Protocol):
    """What :func:`check_terms` reads: the terms a grant and an access request share."""

    @property
    def valid_from(self) -> datetime: ...
    @property
    def valid_until(self) -> datetime: ...
    @property
    def actions(self) -> frozenset[Action]: ...
    @property
    def models(self) -> frozenset[str]: ...
    @property
    def epsilon_per_use(self) -> float: ...
    @property
    def datasets(self) -> Mapping[str, DatasetTerms]: ...


def aware(value: datetime) -> datetime:
    """``value`` if it carries a time zone (validity times must)."""
    if value.tzinfo is None:
        raise InvalidRequestError(
            "give validity times with a time zone, e.g. 2026-01-01T00:00:00+08:00"
        )
    return value


def check_terms(terms: _Terms, no_models: str) -> None:
    """The rules a grant and an access request share: a validity window that ends after it
    starts, approved models for training (``no_models`` says what is missing), and a per-use
    epsilon within each dataset's total."""
    if terms.valid_until <= terms.valid_from:
        raise InvalidRequestError("valid_until must be after valid_from")
    if Action.TRAIN in terms.actions and not terms.models:
        raise InvalidRequestError(no_models)
    for name, dataset in terms.datasets.items():
        if terms.epsilon_per_use > dataset.epsilon:
            raise InvalidRequestError(
                f"epsilon_per_use {terms.epsilon_per_use} exceeds the total epsilon "
                f"{dataset.epsilon} for dataset {name!r}; lower epsilon_per_use"
            )


class Grant(BaseModel):
    """One version of a grant.

    >>> from datetime import datetime, UTC
    >>> g = Grant(grant_id="g-1", firm="acme", purpose="credit-risk-statistics",
    ...     legal_basis="PIPL art. 13(1)", actions={Action.QUERY}, epsilon_per_use=0.5,
    ...     min_group_size=10, approved_by="li.wei@stats.gov",
    ...     valid_from=datetime(2026, 1, 1, tzinfo=UTC),
    ...     valid_until=datetime(2027, 1, 1, tzinfo=UTC),
    ...     datasets={"tax": DatasetTerms(epsilon=3, delta=1e-6,
    ...                                   columns={"income": ColumnRule.AGGREGATE_ONLY})})
    >>> g.version, g.revoked
    (1, False)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        return check_all_text(data, "grant")

    grant_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    firm: str = Field(min_length=1)
    datasets: dict[str, DatasetTerms] = Field(min_length=1)
    purpose: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    actions: frozenset[Action] = Field(min_length=1)
    epsilon_per_use: float
    min_group_size: int = Field(ge=1, le=MAX_GROUP_SIZE)
    models: frozenset[str] = frozenset()
    valid_from: datetime
    valid_until: datetime
    approved_by: str = Field(min_length=1, description="the department official who approved")
    version: int = 1
    revoked: bool = False
    revoked_by: str | None = None
    revoked_reason: str | None = None

    @field_validator("epsilon_per_use")
    @classmethod
    def _epsilon_per_use(cls, value: float) -> float:
        return check_epsilon(value, "epsilon_per_use")

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)

    @model_validator(mode="after")
    def _consistent(self) -> Grant:
        check_terms(self, "a grant that allows training must list its approved models")
        return self

    @classmethod
    def parse(cls, data: Any) -> Grant:
        """A grant from a mapping or JSON text; ``InvalidRequestError`` names the first problem.

        >>> Grant.parse({"grant_id": "g"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        policies.errors.InvalidRequestError: invalid grant: firm: Field required (and ...)
        """
        return parse_model(cls, data, "grant")


def load_grant_file(path: Path) -> Grant:
    """Read a grant from a YAML or JSON file; ``InvalidRequestError`` on any problem."""
    return Grant.parse(load_document(Path(path), "grant"))
