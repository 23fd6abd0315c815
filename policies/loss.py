"""A privacy loss, validated once and converted to the ledger's integer units once.

Every epsilon, delta and rho that the policies charge, compare or send to Cedar is a
:class:`PrivacyLoss`. Constructing one checks it against :mod:`policies.bounds`; its
:attr:`PrivacyLoss.units` are what the ledger stores and what Cedar compares (epsilon in
micro-epsilon, delta in femto-delta, rho in nano-rho), each rounded up as charged.

A loss is either basic, ``(epsilon, delta)``, or zCDP, ``rho`` with the share ``delta``
reserved for converting it (then ``epsilon`` is only the declared guarantee, 0 if none).

>>> loss = PrivacyLoss(0.5, 1e-9)
>>> loss.units
LossUnits(epsilon=500000, delta=1000000, rho=None)
>>> PrivacyLoss(0.25).fits_within(loss)
True
>>> PrivacyLoss(float("nan"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
policies.errors.PrivacyParameterError: invalid privacy loss: epsilon must be a finite number...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from policies.bounds import EPSILON_MIN, check_delta, check_epsilon, check_rho
from policies.errors import PrivacyParameterError

EPS_UNITS = 1_000_000  # micro-epsilon
DELTA_UNITS = 10**15  # femto-delta
RHO_UNITS = 10**9  # nano-rho


def charge_units(value: float, units: int) -> int:
    """An amount in the ledger's integer units, rounded up (as charged).

    >>> charge_units(0.1, EPS_UNITS)
    100000
    """
    return math.ceil(value * units - 1e-6)


def cap_units(value: float, units: int) -> int:
    """A cap in the ledger's integer units, rounded down.

    >>> cap_units(2.5, EPS_UNITS)
    2500000
    """
    return math.floor(value * units + 1e-6)


class LossUnits(NamedTuple):
    """A loss in the ledger's integer units: micro-epsilon, femto-delta, nano-rho (or None)."""

    epsilon: int
    delta: int
    rho: int | None


@dataclass(frozen=True)
class PrivacyLoss:
    """The privacy loss of one use, checked when it is made (``PrivacyParameterError``)."""

    epsilon: float = 0.0
    delta: float = 0.0
    rho: float | None = None
    units: LossUnits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            delta = check_delta(self.delta)
            if self.rho is None:
                epsilon, rho = check_epsilon(self.epsilon), None
            else:
                rho = check_rho(self.rho)
                epsilon = 0.0 if self.epsilon == 0 else check_epsilon(self.epsilon)
        except PrivacyParameterError as exc:
            raise PrivacyParameterError(f"invalid privacy loss: {exc}") from None
        if rho is not None and delta <= 0:
            raise PrivacyParameterError(
                "invalid privacy loss: a zCDP (Gaussian) loss needs delta > 0 to convert it; "
                "give the delta share reserved for the conversion"
            )
        object.__setattr__(self, "epsilon", epsilon)
        object.__setattr__(self, "delta", delta)
        object.__setattr__(self, "rho", rho)
        units = LossUnits(
            charge_units(epsilon, EPS_UNITS),
            charge_units(delta, DELTA_UNITS),
            None if rho is None else charge_units(rho, RHO_UNITS),
        )
        object.__setattr__(self, "units", units)

    @classmethod
    def spent(cls, epsilon: float, delta: float = 0.0) -> PrivacyLoss:
        """The (epsilon, delta) a calibrated mechanism spends, charged at least one unit.

        A calibration can come out a hair under the floor it was asked for; the ledger
        charges the floor then (never less than one micro-epsilon).

        >>> PrivacyLoss.spent(0.9999999e-6).units.epsilon
        1
        """
        if isinstance(epsilon, int | float) and 0 < epsilon < EPSILON_MIN:
            epsilon = EPSILON_MIN
        return cls(epsilon, delta)

    @classmethod
    def from_units(cls, units: LossUnits | tuple[int, int, int | None]) -> PrivacyLoss:
        """The loss stored as ``units`` (for reporting; charging uses the units themselves)."""
        eps, delta, rho = units
        return cls(eps / EPS_UNITS, delta / DELTA_UNITS, None if rho is None else rho / RHO_UNITS)

    @property
    def is_zcdp(self) -> bool:
        return self.rho is not None

    def fits_within(self, other: PrivacyLoss) -> bool:
        """True if charging this loss never costs more than charging ``other``: the same
        composition rule and no unit larger."""
        return units_fit(self.units, other.units)


def units_fit(units: LossUnits, limit: LossUnits) -> bool:
    """True if charging ``units`` never costs more than charging ``limit``.

    Basic losses compare epsilon and delta; zCDP losses compare rho at the same delta share
    (a smaller share would convert the same rho to a larger epsilon); the two never mix.

    >>> units_fit(LossUnits(5, 0, None), LossUnits(6, 0, None))
    True
    """
    if units.rho is None or limit.rho is None:
        same_rule = units.rho is None and limit.rho is None
        return same_rule and units.epsilon <= limit.epsilon and units.delta <= limit.delta
    return units.rho <= limit.rho and units.delta == limit.delta
