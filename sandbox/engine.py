"""Moved to :mod:`sandbox.query`; this name stays until every import uses the new one."""

from sandbox.query import (
    CONFIDENCE,
    MAX_PUBLIC_GROUPS,
    MAX_QUANTILE_CANDIDATES,
    DatasetContext,
    PreparedQuery,
    QueryEngine,
    check_dataset_delta,
    check_privacy_parameters,
    fixed_point_unit,
)

__all__ = [
    "CONFIDENCE",
    "MAX_PUBLIC_GROUPS",
    "MAX_QUANTILE_CANDIDATES",
    "DatasetContext",
    "PreparedQuery",
    "QueryEngine",
    "check_dataset_delta",
    "check_privacy_parameters",
    "fixed_point_unit",
]
