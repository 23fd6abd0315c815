"""What a DP query releases: values, their intervals, the mechanisms, and the privacy spent.

>>> result = QueryResult(
...     sql="SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex",
...     dataset="pums",
...     outputs=["sex", "n"],
...     group_by=["sex"],
...     columns={"sex": [0, 1], "n": [512, 488]},
...     aggregates={
...         "n": AggregateRelease("n", "count", None, None, [], 1.0, [(509.0, 515.0), None])
...     },
...     epsilon_spent=1.0,
...     delta_spent=0.0,
...     confidence=0.95,
... )
>>> result.rows()[0]
{'sex': 0, 'n': {'value': 512, 'ci95': [509.0, 515.0]}}
>>> print(result.table())
 sex                n
──────────────────────
   0   512 [509, 515]
   1              488
-- 2 rows; 95% intervals; epsilon spent 1, delta spent 0
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sandbox.tables import render


@dataclass
class AggregateRelease:
    """One aggregate of the SELECT list: how it was released and its per-row intervals."""

    name: str
    kind: str
    column: str | None
    quantile: float | None
    mechanisms: list[dict[str, Any]]  # statistic, mechanism, scale, epsilon
    epsilon: float
    intervals: list[tuple[float, float] | None]


@dataclass
class QueryResult:
    """A released query result. Every value in it is the output of an OpenDP mechanism."""

    sql: str
    dataset: str
    outputs: list[str]
    group_by: list[str]
    columns: dict[str, list[Any]]
    aggregates: dict[str, AggregateRelease]
    epsilon_spent: float
    delta_spent: float
    confidence: float
    extra_mechanisms: list[dict[str, Any]] = field(default_factory=list)
    selection_threshold: int | None = None
    suppressed_groups: int = 0
    order_by: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None

    def rows(self) -> list[dict[str, Any]]:
        """Released rows; an aggregate cell is ``{"value": v, "ci95": [low, high] | None}``."""
        n = len(next(iter(self.columns.values()))) if self.columns else 0
        out = []
        for i in range(n):
            row: dict[str, Any] = {}
            for name in self.outputs:
                value = _jsonable(self.columns[name][i])
                if name in self.aggregates:
                    interval = self.aggregates[name].intervals[i]
                    row[name] = {"value": value, "ci95": list(interval) if interval else None}
                else:
                    row[name] = value
            out.append(row)
        for name, descending in reversed(self.order_by):
            out.sort(key=functools.partial(_row_key, name), reverse=descending)
        return out[: self.limit] if self.limit is not None else out

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "sql": self.sql,
            "rows": self.rows(),
            "confidence": self.confidence,
            "epsilon_spent": self.epsilon_spent,
            "delta_spent": self.delta_spent,
            "aggregates": [
                {
                    "name": a.name,
                    "kind": a.kind,
                    "column": a.column,
                    "quantile": a.quantile,
                    "epsilon": a.epsilon,
                    "mechanisms": a.mechanisms,
                    "interval_note": None
                    if a.kind != "quantile"
                    else ("no value interval: the exponential mechanism's error is in rank"),
                }
                for a in self.aggregates.values()
            ],
            "extra_mechanisms": self.extra_mechanisms,
            "selection_threshold": self.selection_threshold,
            "suppressed_groups": self.suppressed_groups,
        }

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of what was released (for the transparency log)."""
        blob = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def table(self) -> str:
        """A plain-text table: one line per row, aggregates as ``value [low, high]``."""
        header = list(self.outputs)
        lines = []
        for row in self.rows():
            cells = []
            for name in header:
                cell = row[name]
                if isinstance(cell, dict):
                    ci = cell["ci95"]
                    text = _fmt(cell["value"])
                    if ci:
                        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
                    cells.append(text)
                else:
                    cells.append(str(cell))
            lines.append(cells)
        footer = (
            f"-- {len(lines)} rows; {int(self.confidence * 100)}% intervals; "
            f"epsilon spent {self.epsilon_spent:.6g}, delta spent {self.delta_spent:.3g}"
        )
        if self.suppressed_groups:
            footer += f"; {self.suppressed_groups} small groups suppressed"
        return render(header, lines) + "\n" + footer


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _row_key(name: str, row: dict[str, Any]) -> tuple[int, Any]:
    return _sort_key(row[name])


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, dict):
        value = value["value"]
    return (value is None, value if value is not None else 0)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
