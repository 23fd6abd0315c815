"""A request to use data: what the query service or a training job asks the engine."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.bounds import check_delta, check_epsilon, check_rho
from policies.grants import Action, ColumnUse


class ColumnRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    use: ColumnUse


class Request(BaseModel):
    """One query or training job, as declared by the firm.

    ``epsilon``/``delta`` is the (epsilon, delta)-DP guarantee of the whole use. For a
    Gaussian mechanism also give ``rho`` (its zCDP parameter): the ledger then composes it
    under zCDP, with ``delta`` as the share reserved for converting it.

    >>> r = Request(firm="acme", dataset="tax", purpose="p", action="query", epsilon=0.1,
    ...             columns=[ColumnRef(name="income", use="aggregate")], min_group_size=10)
    >>> r.column_uses()
    ['income/aggregate']
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    firm: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    action: Action
    columns: tuple[ColumnRef, ...] = Field(min_length=1)
    epsilon: float
    delta: float = 0.0
    rho: float | None = None
    min_group_size: int = Field(ge=1)
    model: str | None = None
    grant_id: str | None = None
    plan_digest: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="a training job's approved plan: SHA-256 hex of the job spec's canonical JSON",
    )

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, value: float) -> float:
        return check_epsilon(value)

    @field_validator("delta")
    @classmethod
    def _delta(cls, value: float) -> float:
        return check_delta(value)

    @field_validator("rho")
    @classmethod
    def _rho(cls, value: float | None) -> float | None:
        return None if value is None else check_rho(value)

    @model_validator(mode="after")
    def _consistent(self) -> Request:
        if self.action == Action.TRAIN and not self.model:
            raise ValueError("a training request must name its model")
        if self.rho is not None and self.delta <= 0:
            raise ValueError("a Gaussian (rho) request needs delta > 0")
        return self

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
