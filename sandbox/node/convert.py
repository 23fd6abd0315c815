"""Product objects to ``sandbox.v1`` messages: a DP release and a dataset's public metadata.

Only two things ever leave a department node, and these are their only converters:

* :func:`query_result_message` — a :class:`~sandbox.query.QueryResult` (values released by
  OpenDP mechanisms, their 95% intervals, the mechanisms and the privacy spent) as the
  ``QueryResult`` message, one ``ReleasedGroup`` per row of ``QueryResult.rows()``;
* :func:`dataset_metadata_message` — ``Manifest.public_metadata()`` as ``DatasetMetadata``
  (the node-local file name is left out).

>>> value_message(3).int_value, value_message(None).WhichOneof("kind")
(3, None)
>>> import datetime
>>> value_message(datetime.date(2026, 1, 31)).date_value
'2026-01-31'
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from sandbox.protocol.v1 import sandbox_pb2 as pb

if TYPE_CHECKING:
    from sandbox.catalog import Manifest
    from sandbox.query import QueryResult


def value_message(value: Any, *, date: bool = False) -> pb.Value:
    """One cell as a ``Value`` (``None`` is a Value with no kind set).

    ``date=True`` marks an ISO date text (as ``QueryResult.rows()`` writes dates) as a date.
    """
    if value is None:
        return pb.Value()
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, int):
        return pb.Value(int_value=value)
    if isinstance(value, float):
        return pb.Value(float_value=value)
    if isinstance(value, dt.date):
        return pb.Value(date_value=value.isoformat())
    if isinstance(value, str):
        return pb.Value(date_value=value) if date else pb.Value(string_value=value)
    raise TypeError(f"a released cell must be a plain value, not {type(value).__name__}")


def _mechanism(m: dict[str, Any]) -> pb.Mechanism:
    return pb.Mechanism(
        statistic=str(m["statistic"]),
        mechanism=str(m["mechanism"]),
        scale=float(m["scale"]),
        epsilon=float(m["epsilon"]),
    )


def _interval(ci: Any) -> pb.Interval | None:
    if not ci:
        return None
    low, high = float(ci[0]), float(ci[1])
    if math.isnan(low) or math.isnan(high):
        return None
    return pb.Interval(low=low, high=high)


def query_result_message(result: QueryResult) -> pb.QueryResult:
    """A released query result as the protocol's ``QueryResult`` (see ``QueryResult.to_json``).

    The groups are ``result.rows()`` in order (after the query's ORDER BY and LIMIT, which are
    post-processing); each cell is a released group key, or an aggregate's DP value with its
    95% interval when it has one.
    """
    dates = {
        name
        for name in result.outputs
        if any(isinstance(v, dt.date) for v in result.columns.get(name, ()))
    }
    released = result.to_json()
    groups = []
    for row in released["rows"]:
        cells = []
        for name in result.outputs:
            cell = row[name]
            if isinstance(cell, dict):  # an aggregate: {"value": v, "ci95": [low, high] | None}
                cells.append(
                    pb.ReleasedCell(
                        value=value_message(cell["value"], date=name in dates),
                        ci95=_interval(cell["ci95"]),
                    )
                )
            else:  # a released group key
                cells.append(pb.ReleasedCell(value=value_message(cell, date=name in dates)))
        groups.append(pb.ReleasedGroup(cells=cells))
    aggregates = [
        pb.AggregateRelease(
            name=a["name"],
            kind=a["kind"],
            column=a["column"],
            quantile=a["quantile"],
            epsilon=float(a["epsilon"]),
            mechanisms=[_mechanism(m) for m in a["mechanisms"]],
            interval_note=a["interval_note"],
        )
        for a in released["aggregates"]
    ]
    return pb.QueryResult(
        dataset=result.dataset,
        sql=result.sql,
        outputs=list(result.outputs),
        group_by=list(result.group_by),
        groups=groups,
        confidence=float(result.confidence),
        epsilon_spent=float(result.epsilon_spent),
        delta_spent=float(result.delta_spent),
        aggregates=aggregates,
        extra_mechanisms=[_mechanism(m) for m in result.extra_mechanisms],
        selection_threshold=result.selection_threshold,
        suppressed_groups=int(result.suppressed_groups),
    )


def dataset_metadata_message(manifest: Manifest, node: str) -> pb.DatasetMetadata:
    """``manifest.public_metadata()`` as ``DatasetMetadata`` held by ``node`` (no file name)."""
    meta = manifest.public_metadata()
    columns = []
    for col in meta["columns"]:
        is_date = col["type"] == "date"
        bounds = None
        if col.get("bounds") is not None:
            low, high = col["bounds"]
            bounds = pb.Bounds(
                low=value_message(low, date=is_date), high=value_message(high, date=is_date)
            )
        columns.append(
            pb.ColumnMetadata(
                name=col["name"],
                type=col["type"],
                role=col["role"],
                bounds=bounds,
                categories=[value_message(v, date=is_date) for v in col.get("categories") or ()],
                description=col.get("description") or "",
            )
        )
    unit = meta["privacy_unit"]
    return pb.DatasetMetadata(
        name=meta["name"],
        title=meta["title"],
        department=meta["department"],
        city=meta["city"],
        description=meta["description"],
        classification=meta["classification"],
        privacy_unit=pb.PrivacyUnit(id_column=unit["id_column"], max_rows=unit["max_rows"]),
        row_bound=meta["row_bound"],
        max_delta=meta["max_delta"],
        out_of_bounds=meta["out_of_bounds"],
        columns=columns,
        node=node,
    )
