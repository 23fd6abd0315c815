"""95% confidence intervals of released values (post-processing only; no privacy is spent).

COUNT and SUM use the accuracy OpenDP states for each Laplace release. AVG is a noisy sum over
a noisy count; its interval comes from the tail of the difference of two Laplace variables
(:func:`laplace_difference_quantile`). A quantile gets no value interval: the exponential
mechanism's error is in rank, and turning it into values would need the data's distribution.

>>> round(laplace_difference_quantile(1.0, 0.0, 0.05), 4)  # a single Laplace: ln(1/alpha)
2.9957
>>> round(laplace_difference_quantile(1.0, 1.0, 0.05), 4)
4.113
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import opendp.prelude as dp
from scipy.optimize import brentq

#: Confidence level of every released interval.
CONFIDENCE = 0.95

Interval = tuple[float, float]


def accuracy(row: dict[str, Any]) -> float:
    """Half-width of the 95% interval OpenDP states for a Laplace release."""
    acc = row.get("accuracy")
    if acc is None or not math.isfinite(acc):
        # OpenDP's discrete accuracy overflows at tiny scales; the continuous bound is larger
        # than the discrete one, so it is still a valid 95% half-width.
        acc = dp.laplacian_scale_to_accuracy(float(row["scale"]), 1 - CONFIDENCE)
    return float(acc)


def additive_intervals(
    values: list[Any], half_width: float, nonnegative: bool
) -> list[Interval | None]:
    """``value ± half_width`` per value (None stays None), cut at zero for counts."""
    if nonnegative:  # clamping at zero is post-processing; the interval stays valid
        return [
            None if v is None else (max(0.0, v - half_width), max(0.0, v + half_width))
            for v in values
        ]
    return [None if v is None else (v - half_width, v + half_width) for v in values]


def mean_intervals(
    sums: np.ndarray, counts: np.ndarray, scale_sum: float, scale_n: float
) -> tuple[list[Any], list[Interval | None]]:
    """AVG = noisy sum / noisy count, with a 95% interval for the ratio (post-processing only).

    To first order the error of S'/N' is (e_S - m * e_N) / N with e_S, e_N independent
    Laplace errors, so it is the difference of two Laplace variables of scales
    p = scale_sum / N and q = |m| * scale_n / N, whose tail has a closed form. The released
    values stand in for the unknown N and m.
    """
    values: list[Any] = []
    intervals: list[Interval | None] = []
    for s, n in zip(sums, counts, strict=True):
        if not np.isfinite(s) or not np.isfinite(n) or n < 1:
            values.append(None)
            intervals.append(None)
            continue
        mean = float(s / n)
        half = laplace_difference_quantile(scale_sum / n, abs(mean) * scale_n / n, 1 - CONFIDENCE)
        values.append(mean)
        intervals.append((float(mean - half), float(mean + half)))
    return values, intervals


def clamp_intervals(
    values: list[Any], intervals: list[Interval | None], low: float, high: float
) -> tuple[list[Any], list[Interval | None]]:
    """Clamp estimates and intervals to public bounds: post-processing that keeps every
    interval that held the truth (a mean lies within its column's bounds)."""

    def clamp(v: float) -> float:
        return min(max(v, low), high)

    return (
        [None if v is None else clamp(v) for v in values],
        [None if i is None else (clamp(i[0]), clamp(i[1])) for i in intervals],
    )


def laplace_difference_quantile(p: float, q: float, alpha: float) -> float:
    """z with P(|X - Y| > z) = alpha for independent Laplace X (scale p) and Y (scale q)."""
    p, q = max(p, q), min(p, q)
    if q <= p * 1e-9:
        return p * math.log(1 / alpha)

    def tail(z: float) -> float:  # P(|X - Y| > z), z >= 0; decreasing in z
        if abs(p - q) <= 1e-12 * p:
            return math.exp(-z / p) * (2 + z / p) / 2
        return (p * p * math.exp(-z / p) - q * q * math.exp(-z / q)) / (p * p - q * q)

    high = (p + q) * math.log(2 / alpha) * 2
    tolerance = high * 1e-12
    z = float(brentq(lambda z: tail(z) - alpha, 0.0, high, xtol=tolerance))
    # brentq's root is within the tolerance on either side: step to the side whose tail is at
    # most alpha, so the interval never covers less than it states.
    return z if tail(z) <= alpha else z + tolerance
