"""The validated query plan: what to filter, group and aggregate on one dataset.

:func:`sandbox.query.sql.parse_query` builds these from SQL text; the compiler
(:mod:`sandbox.query.compile`) turns them into an OpenDP measurement. Every type is a frozen
dataclass, so a plan can be cached and shared.

>>> plan = QueryPlan(
...     sql="SELECT sex, COUNT(*) AS n FROM pums WHERE age >= 18 GROUP BY sex",
...     dataset="pums",
...     outputs=("sex", Aggregate("count", None, "n")),
...     group_by=("sex",),
...     where=Compare("age", ">=", 18),
... )
>>> plan.aggregates
(Aggregate(kind='count', column=None, alias='n', quantile=None),)
>>> sorted((name, sorted(uses)) for name, uses in plan.column_uses().items())
[('age', ['filter']), ('sex', ['group_by'])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AggregateKind = Literal["count", "sum", "avg", "quantile"]
ColumnUse = Literal["filter", "group_by", "aggregate"]
ComparisonOp = Literal["==", "!=", "<", "<=", ">", ">="]


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of the SELECT list. ``column`` is None for COUNT(*)."""

    kind: AggregateKind
    column: str | None
    alias: str
    quantile: float | None = None


@dataclass(frozen=True)
class Compare:
    """``column op value``, the value a literal of the column's type."""

    column: str
    op: ComparisonOp
    value: Any


@dataclass(frozen=True)
class InList:
    """``column IN (values...)``."""

    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Between:
    """``column BETWEEN low AND high`` (both ends included)."""

    column: str
    low: Any
    high: Any


@dataclass(frozen=True)
class IsNull:
    """``column IS NULL`` (``IS NOT NULL`` is its :class:`Negation`)."""

    column: str


@dataclass(frozen=True)
class BoolOp:
    """A flattened chain of AND (or OR)."""

    op: Literal["and", "or"]
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Negation:
    """``NOT part``."""

    part: Condition


Condition = Compare | InList | Between | IsNull | BoolOp | Negation


@dataclass(frozen=True)
class QueryPlan:
    """A validated query: what to filter, group and aggregate on one dataset."""

    sql: str
    dataset: str
    outputs: tuple[str | Aggregate, ...]  # group-by key names and aggregates in SELECT order
    group_by: tuple[str, ...]
    where: Condition | None = None
    order_by: tuple[tuple[str, bool], ...] = ()  # (output name, descending)
    limit: int | None = None
    aggregates: tuple[Aggregate, ...] = field(init=False)

    def __post_init__(self) -> None:
        aggs = tuple(o for o in self.outputs if isinstance(o, Aggregate))
        object.__setattr__(self, "aggregates", aggs)

    @property
    def output_names(self) -> list[str]:
        """The released columns' names, in SELECT order."""
        return [o if isinstance(o, str) else o.alias for o in self.outputs]

    def column_uses(self) -> dict[str, set[ColumnUse]]:
        """Every column the query touches and how: what a policy engine checks."""
        uses: dict[str, set[ColumnUse]] = {}
        for name in condition_columns(self.where):
            uses.setdefault(name, set()).add("filter")
        for name in self.group_by:
            uses.setdefault(name, set()).add("group_by")
        for agg in self.aggregates:
            if agg.column is not None:
                uses.setdefault(agg.column, set()).add("aggregate")
        return uses


def condition_columns(cond: Condition | None) -> list[str]:
    """The columns a condition names, in order (with repeats)."""
    if cond is None:
        return []
    if isinstance(cond, BoolOp):
        return [c for part in cond.parts for c in condition_columns(part)]
    if isinstance(cond, Negation):
        return condition_columns(cond.part)
    return [cond.column]


def predicate_count(cond: Condition | None) -> int:
    """Comparisons a condition makes: each IN literal and each side of a BETWEEN counts."""
    if cond is None:
        return 0
    if isinstance(cond, BoolOp):
        return sum(predicate_count(p) for p in cond.parts)
    if isinstance(cond, Negation):
        return predicate_count(cond.part)
    if isinstance(cond, InList):
        return len(cond.values)
    return 2 if isinstance(cond, Between) else 1
