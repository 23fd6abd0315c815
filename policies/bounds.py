"""The limits every privacy parameter must respect, checked in one place.

* epsilon is a finite number of at least :data:`EPSILON_MIN`. The ledger counts epsilon in
  micro-epsilon and rounds every charge up, so a smaller epsilon could not be charged exactly;
  NaN, infinities, zero and negatives mean "no protection" or nothing at all and are refused.
* delta is a finite number in ``[0, 1)``; where the size of the protected population is known,
  it must also be below ``1 / rows`` (a delta of ``1/rows`` or more lets a mechanism publish one
  person's record outright with that probability), or below a smaller maximum the department
  declares.

>>> check_epsilon(0.5)
0.5
>>> check_epsilon(float("inf"))
Traceback (most recent call last):
...
policies.errors.PrivacyParameterError: epsilon must be a finite number, got inf
>>> check_delta(1e-9, rows=100)
1e-09
"""

from __future__ import annotations

import math
from typing import Any

from policies.errors import PrivacyParameterError

#: The smallest epsilon accepted anywhere: one micro-epsilon, the ledger's unit.
EPSILON_MIN = 1e-6
#: The largest epsilon accepted anywhere. Far beyond any meaningful guarantee (grants cap each
#: use much lower), it keeps every amount a 64-bit integer in the ledger and in Cedar.
EPSILON_MAX = 1e7
#: The smallest zCDP rho accepted: one nano-rho, the ledger's unit.
RHO_MIN = 1e-9
#: The largest zCDP rho accepted (64-bit integer nano-rho).
RHO_MAX = 1e7
#: The largest minimum group size a grant or request may name (a 64-bit integer in Cedar).
MAX_GROUP_SIZE = 1_000_000_000


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PrivacyParameterError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise PrivacyParameterError(f"{name} must be a finite number, got {number!r}")
    return number


def check_epsilon(value: Any, name: str = "epsilon") -> float:
    """``value`` as a float if it is a finite epsilon of at least :data:`EPSILON_MIN`."""
    eps = _number(name, value)
    if eps < EPSILON_MIN:
        raise PrivacyParameterError(
            f"{name} must be at least {EPSILON_MIN:g} (one micro-epsilon, the ledger's unit), "
            f"got {eps!r}"
        )
    if eps > EPSILON_MAX:
        raise PrivacyParameterError(
            f"{name} must be at most {EPSILON_MAX:g}, got {eps:g}; ask for a smaller epsilon"
        )
    return eps


def check_rho(value: Any, name: str = "rho") -> float:
    """``value`` as a float if it is a finite zCDP rho of at least :data:`RHO_MIN`."""
    rho = _number(name, value)
    if rho < RHO_MIN:
        raise PrivacyParameterError(
            f"{name} must be at least {RHO_MIN:g} (one nano-rho, the ledger's unit), got {rho!r}"
        )
    if rho > RHO_MAX:
        raise PrivacyParameterError(
            f"{name} must be at most {RHO_MAX:g}, got {rho:g}; ask for a smaller rho"
        )
    return rho


def delta_limit(rows: int | None = None, max_delta: float | None = None) -> float | None:
    """The largest delta allowed (exclusive when it comes from ``rows``), or None if unknown."""
    limits = []
    if rows is not None and rows > 0:
        limits.append(1.0 / rows)
    if max_delta is not None:
        limits.append(max_delta)
    return min(limits) if limits else None


def check_delta(
    value: Any,
    name: str = "delta",
    *,
    rows: int | None = None,
    max_delta: float | None = None,
) -> float:
    """``value`` as a float if it is a finite delta in ``[0, 1)``, below ``1/rows`` when the
    row count is known, and at most ``max_delta`` when the dataset declares one."""
    delta = _number(name, value)
    if not 0 <= delta < 1:
        raise PrivacyParameterError(f"{name} must be in [0, 1), got {delta!r}")
    if rows is not None and rows > 0 and delta > 0 and delta >= 1.0 / rows:
        raise PrivacyParameterError(
            f"{name} {delta:g} must be below 1/rows = {1.0 / rows:g} of a dataset with "
            f"{rows} rows; choose a smaller delta (1e-7 or less is usual)"
        )
    if max_delta is not None and delta > max_delta:
        raise PrivacyParameterError(
            f"{name} {delta:g} exceeds the maximum {max_delta:g} the dataset's department "
            "allows; choose a smaller delta"
        )
    return delta


def check_text(value: str, name: str, max_length: int = 1000) -> str:
    """``value`` if it is text that can be stored and logged: encodable as UTF-8 (no lone
    surrogates), without NUL, and at most ``max_length`` characters."""
    from policies.errors import InvalidRequestError

    if len(value) > max_length:
        raise InvalidRequestError(f"{name} is longer than {max_length} characters; shorten it")
    if "\x00" in value:
        raise InvalidRequestError(f"{name} contains a NUL character; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"{name} is not valid Unicode text (it holds a lone surrogate); send UTF-8 text"
        ) from None
    return value


def check_all_text(data: Any, what: str, max_length: int = 10_000) -> Any:
    """``data`` unchanged if every string in it (keys and values, nested) passes
    :func:`check_text`; a pydantic ``mode="before"`` validator for models stored and logged."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, f"a text field of the {what}", max_length)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return data
