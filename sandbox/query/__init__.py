"""The DP query engine: SQL in, values with 95% intervals and the exact privacy spent out.

A firm's SQL is parsed into a validated plan (:mod:`~sandbox.query.sql`,
:mod:`~sandbox.query.plan`), compiled into OpenDP mechanisms over the dataset's context
(:mod:`~sandbox.query.compile`, :mod:`~sandbox.query.context`), calibrated
(:mod:`~sandbox.query.calibrate`), released once through OpenDP and post-processed into a
:class:`QueryResult` with intervals (:mod:`~sandbox.query.postprocess`,
:mod:`~sandbox.query.intervals`). :class:`QueryEngine` (:mod:`~sandbox.query.runner`) is the
entry point; the governed path (``sandbox.service``) puts a policy decision and the ledger
between :meth:`QueryEngine.prepare` and :meth:`PreparedQuery.release`.

>>> from sandbox.catalog import load_catalog
>>> engine = QueryEngine(load_catalog("examples/pums"))
>>> result = engine.run("SELECT COUNT(*) AS n FROM pums", epsilon=1.0)
>>> result.outputs, result.epsilon_spent <= 1.0
(['n'], True)
"""

from sandbox.query.calibrate import Calibrator
from sandbox.query.context import DatasetContext, fixed_point_unit
from sandbox.query.intervals import CONFIDENCE
from sandbox.query.limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_GROUP_KEYS,
    MAX_IN_LIST,
    MAX_LIMIT,
    MAX_NAME_LENGTH,
    MAX_PREDICATES,
    MAX_PUBLIC_GROUPS,
    MAX_QUANTILE_CANDIDATES,
    MAX_SELECT_ITEMS,
    MAX_SQL_LENGTH,
)
from sandbox.query.parameters import check_dataset_delta, check_privacy_parameters
from sandbox.query.plan import (
    Aggregate,
    AggregateKind,
    Between,
    BoolOp,
    ColumnUse,
    Compare,
    Condition,
    InList,
    IsNull,
    Negation,
    QueryPlan,
)
from sandbox.query.result import AggregateRelease, QueryResult
from sandbox.query.runner import PreparedQuery, QueryEngine
from sandbox.query.sql import parse_query

__all__ = [
    "CONFIDENCE",
    "MAX_EXPRESSION_DEPTH",
    "MAX_GROUP_KEYS",
    "MAX_IN_LIST",
    "MAX_LIMIT",
    "MAX_NAME_LENGTH",
    "MAX_PREDICATES",
    "MAX_PUBLIC_GROUPS",
    "MAX_QUANTILE_CANDIDATES",
    "MAX_SELECT_ITEMS",
    "MAX_SQL_LENGTH",
    "Aggregate",
    "AggregateKind",
    "AggregateRelease",
    "Between",
    "BoolOp",
    "Calibrator",
    "ColumnUse",
    "Compare",
    "Condition",
    "DatasetContext",
    "InList",
    "IsNull",
    "Negation",
    "PreparedQuery",
    "QueryEngine",
    "QueryPlan",
    "QueryResult",
    "check_dataset_delta",
    "check_privacy_parameters",
    "fixed_point_unit",
    "parse_query",
]
