"""Checking a query's privacy parameters before any work: epsilon and delta, then the
dataset's own delta limit (public metadata only, so a refusal reveals nothing about rows).

>>> check_privacy_parameters(1, 0)
(1.0, 0.0)
>>> check_privacy_parameters(float("nan"), 0)
Traceback (most recent call last):
sandbox.errors.PrivacyParameterError: epsilon must be a finite number, got nan
"""

from __future__ import annotations

from typing import Any

from policies.bounds import EPSILON_MIN, check_delta, check_epsilon
from policies.errors import PrivacyParameterError as _PolicyPrivacyParameterError
from sandbox.catalog import Manifest
from sandbox.errors import PrivacyParameterError, QueryError


def check_privacy_parameters(epsilon: Any, delta: Any) -> tuple[float, float]:
    """Refuse NaN, infinities, non-numbers, epsilon below ``policies.bounds.EPSILON_MIN`` and
    delta outside [0, 1) (the dataset's own delta limit is :func:`check_dataset_delta`)."""
    try:
        return check_epsilon(epsilon), check_delta(delta)
    except _PolicyPrivacyParameterError as exc:
        raise PrivacyParameterError(str(exc)) from None


def check_dataset_delta(manifest: Manifest, delta: Any) -> float:
    """Refuse a delta the dataset does not allow: at or above ``1 / row_bound`` (the manifest's
    public upper bound on its rows), or above its ``max_delta``."""
    delta = check_privacy_parameters(EPSILON_MIN, delta)[1]
    try:
        return check_delta(delta, rows=manifest.row_bound, max_delta=manifest.max_delta)
    except _PolicyPrivacyParameterError:
        raise PrivacyParameterError(
            f"delta {delta:g} is too large for {manifest.name!r}: it must be "
            f"{manifest.delta_limit()} (row_bound is the manifest's public bound on its rows); "
            "choose a smaller delta"
        ) from None


def check_min_group_size(min_group_size: Any) -> int | None:
    """None, or a non-negative integer."""
    if min_group_size is not None and (
        isinstance(min_group_size, bool)
        or not isinstance(min_group_size, int)
        or min_group_size < 0
    ):
        raise QueryError(
            f"min_group_size must be a non-negative integer, got {min_group_size!r}; "
            "pass a whole number of rows (or none)"
        )
    return min_group_size
