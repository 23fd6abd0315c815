"""A request to use data: what the query service or a training job asks the engine."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from policies.bounds import MAX_GROUP_SIZE, check_all_text, check_text
from policies.errors import InvalidRequestError
from policies.grants import Action, ColumnUse
from policies.loss import PrivacyLoss

#: The longest SQL text a request carries (the query service's own limit).
MAX_SQL_LENGTH = 100_000


class ColumnRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    use: ColumnUse


class Request(BaseModel):
    """One query or training job, as declared by the firm.

    ``epsilon``/``delta`` is the (epsilon, delta)-DP guarantee of the whole use, checked once
    as :attr:`loss`. For a Gaussian mechanism also give ``rho`` (its zCDP parameter): the
    ledger then composes it under zCDP, with ``delta`` as the share reserved for converting it.

    The smallest group a release may show is the grant's ``min_group_size``, which the
    decision's obligations carry; a firm may ask for a larger one here (``min_group_size``),
    never a smaller one (that request is denied).

    >>> r = Request(firm="acme", dataset="tax", purpose="p", action="query", epsilon=0.1,
    ...             columns=[ColumnRef(name="income", use="aggregate")])
    >>> r.column_uses(), r.loss.units.epsilon
    (['income/aggregate'], 100000)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("sql"), str):
            check_text(data["sql"], "the request's SQL", MAX_SQL_LENGTH)
            check_all_text({k: v for k, v in data.items() if k != "sql"}, "request")
            return data
        return check_all_text(data, "request")

    firm: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    action: Action
    columns: tuple[ColumnRef, ...] = Field(min_length=1)
    epsilon: float
    delta: float = 0.0
    rho: float | None = None
    min_group_size: int | None = Field(default=None, ge=1, le=MAX_GROUP_SIZE)
    model: str | None = None
    grant_id: str | None = None
    plan_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="a training job's approved plan: SHA-256 hex of the job spec's canonical JSON",
    )
    sql: str | None = Field(
        default=None,
        max_length=MAX_SQL_LENGTH,
        description="a query's SQL text as the firm sent it (logged with the request)",
    )
    _loss: PrivacyLoss = PrivateAttr()

    @model_validator(mode="after")
    def _consistent(self) -> Request:
        if self.action == Action.TRAIN and not self.model:
            raise InvalidRequestError("a training request must name its model")
        self._loss = PrivacyLoss(self.epsilon, self.delta, self.rho)
        return self

    @property
    def loss(self) -> PrivacyLoss:
        """The privacy loss this request declares, validated once."""
        return self._loss

    def column_uses(self) -> list[str]:
        return sorted({f"{c.name}/{c.use}" for c in self.columns})

    def digest(self) -> str:
        """SHA-256 of the request's canonical JSON, to tie log entries together."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()

    @classmethod
    def parse(cls, data: object) -> Request:
        """A request from a mapping or JSON text (``InvalidRequestError`` if it is invalid)."""
        from policies.parsing import parse_model

        return parse_model(cls, data, "request")
