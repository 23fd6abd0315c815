"""Compiling a validated plan into the mechanisms and the Polars plan OpenDP measures.

:func:`compile_plan` decides which noisy statistics a query needs (an AVG is a noisy sum and
a noisy count; grouping by private keys or suppressing small groups needs a row count) and
how epsilon is shared among them. :func:`build_plan` writes the Polars plan at given noise
scales, on the context's empty frame, for :meth:`DatasetContext.measurement`.

>>> from sandbox.catalog import load_catalog
>>> from sandbox.query.sql import parse_query
>>> catalog = load_catalog("examples/pums")
>>> ctx = DatasetContext(catalog["pums"])
>>> plan = parse_query("SELECT sex, AVG(income) FROM pums GROUP BY sex", catalog)
>>> compiled = compile_plan(plan, ctx, min_group_size=None)
>>> [(m.name, m.role, compiled.shares[m.name]) for m in compiled.mechanisms]
[('__a0_sum', 'sum', 0.5), ('__a0_n', 'count', 0.5)]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl

from sandbox.catalog import ColumnSpec, polars_type
from sandbox.errors import UnsupportedQuery
from sandbox.query.context import DatasetContext, day_number
from sandbox.query.limits import MAX_PUBLIC_GROUPS, MAX_QUANTILE_CANDIDATES
from sandbox.query.plan import (
    Aggregate,
    Between,
    Compare,
    Condition,
    InList,
    IsNull,
    Negation,
    QueryPlan,
)


@dataclass(frozen=True)
class Mechanism:
    """One noisy statistic in the OpenDP plan; several make up an AVG."""

    name: str  # column name in the released frame
    role: str  # "count" | "sum" | "quantile" | "partition"
    aggregate: Aggregate | None
    expr: Callable[[float], pl.Expr]  # builds the expression at a given scale
    shape: tuple[Any, ...]  # everything its sensitivity depends on
    unit: float = 1.0  # fixed-point unit: released values are divided by it


@dataclass
class CompiledQuery:
    """A plan's mechanisms, their epsilon shares, and how its groups are found."""

    plan: QueryPlan
    mechanisms: list[Mechanism]
    shares: dict[str, float]  # mechanism name -> epsilon share
    public_keys: pl.DataFrame | None
    needs_threshold: bool
    count_name: str | None  # a count mechanism usable for min-group-size suppression
    hidden: set[str] = field(default_factory=set)
    key_types: dict[str, str] = field(default_factory=dict)


def compile_plan(plan: QueryPlan, ctx: DatasetContext, min_group_size: int | None) -> CompiledQuery:
    """The mechanisms a plan needs on ``ctx``, each with its share of epsilon."""
    mechanisms: list[Mechanism] = []
    shares: dict[str, float] = {}
    key_specs = [ctx.columns[k] for k in plan.group_by]
    public = all(s.public_keys() is not None for s in key_specs)
    public_keys = _public_keys(key_specs) if plan.group_by and public else None
    needs_threshold = bool(plan.group_by) and not public
    n_aggs = len(plan.aggregates)
    count_name = None
    for i, agg in enumerate(plan.aggregates):
        parts = _mechanisms_for(agg, i, ctx)
        for part in parts:
            mechanisms.append(part)
            shares[part.name] = 1.0 / len(parts)
        if agg.kind == "count" and agg.column is None and count_name is None:
            count_name = parts[0].name
    hidden: set[str] = set()
    wants_count = needs_threshold or (min_group_size is not None and plan.group_by)
    if wants_count and count_name is None:
        # Partition selection and small-group suppression need a noisy row count per group.
        # It is one more mechanism, and takes its share of epsilon like any aggregate.
        hidden_count = count_star("__rows", None)
        mechanisms.append(hidden_count)
        shares[hidden_count.name] = 1.0
        count_name = hidden_count.name
        hidden.add(hidden_count.name)
        n_aggs += 1
    # Every aggregate (and a hidden count) gets an equal share of epsilon; AVG splits its
    # share between its sum and its count.
    for m in mechanisms:
        shares[m.name] = shares[m.name] / n_aggs
    if needs_threshold:
        # OpenDP selects groups with the first count in the plan: put it first.
        mechanisms.sort(key=lambda m: m.name != count_name)
    key_types: dict[str, str] = {k: ctx.columns[k].type for k in plan.group_by}
    return CompiledQuery(
        plan, mechanisms, shares, public_keys, needs_threshold, count_name, hidden, key_types
    )


def _public_keys(specs: Sequence[ColumnSpec]) -> pl.DataFrame:
    keys = [spec.public_keys() or () for spec in specs]
    size = math.prod(len(k) for k in keys)
    if size > MAX_PUBLIC_GROUPS:
        raise UnsupportedQuery(
            f"grouping by {[s.name for s in specs]} makes {size} groups; at most "
            f"{MAX_PUBLIC_GROUPS} are supported; group by fewer or smaller columns"
        )
    rows = [tuple(day_number(v) for v in row) for row in itertools.product(*keys)]
    schema = {s.name: pl.Int64 if s.type == "date" else polars_type(s.type) for s in specs}
    return pl.DataFrame(rows, schema=schema, orient="row")


def count_star(name: str, agg: Aggregate | None) -> Mechanism:
    """A noisy COUNT(*) released as column ``name``."""
    return Mechanism(
        name,
        "count",
        agg,
        lambda s: dp.len(scale=s, signed=True).alias(name),  # type: ignore[attr-defined]
        ("len",),
    )


def _mechanisms_for(agg: Aggregate, index: int, ctx: DatasetContext) -> list[Mechanism]:
    base = f"__a{index}"
    if agg.kind == "count":
        if agg.column is None:
            return [count_star(base, agg)]
        column = agg.column
        return [
            Mechanism(
                base,
                "count",
                agg,
                lambda s: _dp(pl.col(column)).count(scale=s, signed=True).alias(base),
                ("count", column),
            )
        ]
    spec = ctx.columns[agg.column or ""]
    low, high = spec.bounds or (0, 0)
    unit = ctx.units.get(spec.name, 1)
    if spec.type == "float":
        low, high = round(low * unit), round(high * unit)
    fill = min(max(0, low), high)
    column = spec.name
    if agg.kind == "quantile":
        candidates = _candidates(low, high)
        q = agg.quantile or 0.5
        return [
            Mechanism(
                base,
                "quantile",
                agg,
                lambda s: (
                    _dp(pl.col(column).fill_null(fill)).quantile(q, candidates, scale=s).alias(base)
                ),
                ("quantile", column, q, len(candidates)),
                unit,
            )
        ]
    total = Mechanism(
        f"{base}_sum",
        "sum",
        agg,
        lambda s: (
            _dp(pl.col(column).fill_null(fill)).sum((low, high), scale=s).alias(f"{base}_sum")
        ),
        ("sum", column, low, high),
        unit,
    )
    if agg.kind == "sum":
        return [total]
    count = Mechanism(
        f"{base}_n",
        "count",
        agg,
        lambda s: _dp(pl.col(column)).count(scale=s, signed=True).alias(f"{base}_n"),
        ("count", column),
    )
    return [total, count]


def _dp(expr: pl.Expr) -> Any:
    """OpenDP's ``.dp`` namespace of a Polars expression (registered at run time)."""
    return expr.dp  # type: ignore[attr-defined]


def _candidates(low: int, high: int) -> list[int]:
    """Quantile candidates over integer (or fixed-point) bounds."""
    if high - low + 1 <= MAX_QUANTILE_CANDIDATES:
        return list(range(low, high + 1))
    return sorted({int(round(p)) for p in np.linspace(low, high, MAX_QUANTILE_CANDIDATES)})


def condition_expr(cond: Condition, units: dict[str, int]) -> pl.Expr:
    """The Polars filter of a WHERE condition, on the context's column representation."""

    def lit(column: str, value: Any) -> pl.Expr:
        if column in units:
            return pl.lit(float(value) * units[column])
        return pl.lit(day_number(value))

    if isinstance(cond, Compare):
        col, value = pl.col(cond.column), lit(cond.column, cond.value)
        return {
            "==": col == value,
            "!=": col != value,
            "<": col < value,
            "<=": col <= value,
            ">": col > value,
            ">=": col >= value,
        }[cond.op]
    if isinstance(cond, InList):  # OpenDP does not take is_in; an OR of equalities is the same
        return _balanced(
            [pl.col(cond.column) == lit(cond.column, v) for v in cond.values], lambda a, b: a | b
        )
    if isinstance(cond, Between):
        col = pl.col(cond.column)
        return (col >= lit(cond.column, cond.low)) & (col <= lit(cond.column, cond.high))
    if isinstance(cond, IsNull):
        return pl.col(cond.column).is_null()
    if isinstance(cond, Negation):
        return ~condition_expr(cond.part, units)
    exprs = [condition_expr(p, units) for p in cond.parts]
    if cond.op == "and":
        return _balanced(exprs, lambda a, b: a & b)
    return _balanced(exprs, lambda a, b: a | b)


def _balanced(exprs: list[pl.Expr], op: Callable[[pl.Expr, pl.Expr], pl.Expr]) -> pl.Expr:
    """Combine with an associative operator as a balanced tree: depth log2(n), not n. A chain
    of thousands of ORs overflows the native stack of the plan's (de)serialiser."""
    while len(exprs) > 1:
        paired = [op(exprs[i], exprs[i + 1]) for i in range(0, len(exprs) - 1, 2)]
        if len(exprs) % 2:
            paired.append(exprs[-1])
        exprs = paired
    return exprs[0]


def build_plan(
    compiled: CompiledQuery, ctx: DatasetContext, scales: dict[str, float]
) -> pl.LazyFrame:
    """The Polars plan of ``compiled`` with each mechanism at its scale."""
    frame = ctx.empty
    plan = compiled.plan
    if plan.where is not None:
        frame = frame.filter(condition_expr(plan.where, ctx.units))
    exprs = [m.expr(scales[m.name]) for m in compiled.mechanisms]
    if not plan.group_by:
        return frame.select(exprs)
    grouped = frame.group_by(list(plan.group_by)).agg(exprs)
    if compiled.public_keys is None:
        return grouped
    keys = compiled.public_keys.lazy()
    return keys.join(grouped, how="left", on=list(plan.group_by), nulls_equal=True)
