"""Turning the frame a measurement released into a :class:`QueryResult` (post-processing).

Suppresses groups whose noisy count is below the minimum group size, turns day numbers and
fixed-point integers back into dates and floats, and attaches each value's 95% interval and
the mechanisms that produced it. Nothing here reads the rows: only the released frame and
OpenDP's public description of the measurement.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from sandbox.query.compile import CompiledQuery, Mechanism
from sandbox.query.context import EPOCH
from sandbox.query.intervals import (
    CONFIDENCE,
    Interval,
    accuracy,
    additive_intervals,
    clamp_intervals,
    mean_intervals,
)
from sandbox.query.plan import Aggregate
from sandbox.query.result import AggregateRelease, QueryResult


def to_result(
    info: dict[str, dict[str, Any]],
    compiled: CompiledQuery,
    frame: pl.DataFrame,
    scales: dict[str, float],
    spent: tuple[float, float],
    min_group_size: int | None,
) -> QueryResult:
    """The result of a release; ``info`` is OpenDP's summary row per released column."""
    plan = compiled.plan
    epsilon, delta = spent
    suppressed = 0
    if min_group_size is not None and compiled.count_name and plan.group_by:
        keep = frame[compiled.count_name] >= min_group_size
        suppressed = int((~keep).sum())
        frame = frame.filter(keep)
    if plan.group_by:
        frame = frame.sort(list(plan.group_by)).with_columns(
            (pl.lit(EPOCH) + pl.duration(days=pl.col(k))).alias(k)
            for k in plan.group_by
            if compiled.key_types.get(k) == "date"
        )
    releases: dict[str, AggregateRelease] = {}
    columns: dict[str, list[Any]] = {k: frame[k].to_list() for k in plan.group_by}
    by_agg: dict[int, list[Mechanism]] = {}
    for m in compiled.mechanisms:
        if m.aggregate is not None:
            by_agg.setdefault(id(m.aggregate), []).append(m)
    for agg in plan.aggregates:
        parts = by_agg[id(agg)]
        values, intervals = _values_and_intervals(agg, parts, frame, info)
        columns[agg.alias] = values
        releases[agg.alias] = AggregateRelease(
            name=agg.alias,
            kind=agg.kind,
            column=agg.column,
            quantile=agg.quantile,
            mechanisms=[
                {
                    "statistic": m.role,
                    "mechanism": info[m.name]["distribution"],
                    "scale": scales[m.name] / (m.unit if m.role == "sum" else 1),
                    "epsilon": epsilon * compiled.shares[m.name],
                }
                for m in parts
            ],
            epsilon=epsilon * sum(compiled.shares[m.name] for m in parts),
            intervals=intervals,
        )
    extra = [
        {
            "statistic": "row count (group selection)",
            "mechanism": info[name]["distribution"],
            "scale": scales[name],
            "epsilon": epsilon * compiled.shares[name],
        }
        for name in sorted(compiled.hidden)
    ]
    thresholds = [int(t) for row in info.values() if (t := row.get("threshold"))]
    return QueryResult(
        sql=plan.sql,
        dataset=plan.dataset,
        outputs=plan.output_names,
        group_by=list(plan.group_by),
        columns=columns,
        aggregates=releases,
        epsilon_spent=epsilon,
        delta_spent=delta,
        confidence=CONFIDENCE,
        extra_mechanisms=extra,
        selection_threshold=thresholds[0] if thresholds else None,
        suppressed_groups=suppressed,
        order_by=list(plan.order_by),
        limit=plan.limit,
    )


def _values_and_intervals(
    agg: Aggregate, parts: list[Mechanism], frame: pl.DataFrame, info: dict[str, dict[str, Any]]
) -> tuple[list[Any], list[Interval | None]]:
    first = parts[0]
    if agg.kind in ("count", "sum", "quantile"):
        raw = [
            v if v is None or first.unit == 1 else v / first.unit
            for v in frame[first.name].to_list()
        ]
        if agg.kind == "quantile":  # no value interval: the error is in rank
            return raw, [None] * len(raw)
        half_width = accuracy(info[first.name]) / first.unit
        if agg.kind == "sum":
            return raw, additive_intervals(raw, half_width, nonnegative=False)
        counts = [None if v is None else max(0, v) for v in raw]
        return counts, additive_intervals(raw, half_width, nonnegative=True)
    total, count = parts
    sums = frame[total.name].to_numpy().astype(float) / total.unit
    counts_n = frame[count.name].to_numpy().astype(float)
    scale_sum = float(info[total.name]["scale"]) / total.unit
    scale_n = float(info[count.name]["scale"])
    values, intervals = mean_intervals(sums, counts_n, scale_sum, scale_n)
    low, high = (float(b) / total.unit for b in total.shape[2:4])
    return clamp_intervals(values, intervals, low, high)
