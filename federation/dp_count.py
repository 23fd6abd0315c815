"""Counts a node releases about its rows, through OpenDP's Laplace mechanism.

Used for the row count on the model card and for held-out evaluation counts. The mechanism is
OpenDP's (``make_laplace`` on integers, i.e. the discrete Laplace); nothing here samples noise
by hand. Sensitivity is 1: adding or removing one person changes a count by at most one.
"""

from __future__ import annotations

import opendp.prelude as dp

from federation.errors import InvalidJobError, MechanismError

dp.enable_features("contrib")


def dp_cell(true_count: int, epsilon: float) -> int:
    """Release ``true_count`` with epsilon-DP (add/remove one record), *not* clamped at zero:
    histogram cells are summed over bins and nodes, and clamping each small cell would bias
    every sum upwards (clamping, where wanted, is done after summing; both post-processing).

    >>> isinstance(dp_cell(3, 1.0), int)
    True
    """
    if epsilon <= 0:
        raise InvalidJobError(f"a DP count needs a positive epsilon, got {epsilon}; raise it")
    measurement = dp.m.make_laplace(
        dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=1.0 / epsilon
    )
    if measurement.map(1) > epsilon * (1 + 1e-9):  # type: ignore[no-untyped-call]
        raise MechanismError(
            "the Laplace measurement does not meet the requested epsilon; nothing was released"
        )
    return int(measurement(int(true_count)))


def dp_count(true_count: int, epsilon: float) -> int:
    """Release ``true_count`` with epsilon-DP (add/remove one record), clamped at zero
    (post-processing of :func:`dp_cell`).

    >>> isinstance(dp_count(100, 1.0), int)
    True
    """
    return max(0, dp_cell(true_count, epsilon))
