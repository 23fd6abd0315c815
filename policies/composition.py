"""How privacy losses add up. Both rules used by the ledger are here, explicit and tested.

* Basic composition: running mechanisms with losses (eps_i, delta_i) costs
  (sum eps_i, sum delta_i) in total.
* zCDP: a Gaussian mechanism is rho-zCDP with rho = Delta^2 / (2 sigma^2); rho adds up under
  composition, and rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP for every
  delta > 0 (Bun & Steinke 2016, Proposition 1.3).

An account that has spent both kinds is charged the basic sum of the pure/approximate
losses plus the conversion of the summed rho at the summed delta that the Gaussian uses
reserved. That conversion is never larger than adding up each Gaussian use's own conversion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from policies.errors import PrivacyParameterError
from policies.loss import PrivacyLoss

#: The loss of one use (the name composition has always used): see :mod:`policies.loss`.
Loss = PrivacyLoss


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """Epsilon of (epsilon, delta)-DP implied by rho-zCDP.

    >>> round(zcdp_to_epsilon(0.1, 1e-6), 4)
    2.4508
    """
    if rho < 0:
        raise PrivacyParameterError(f"rho must be >= 0, got {rho}; give a zCDP rho of at least 0")
    if rho == 0:
        return 0.0
    if not 0 < delta < 1:
        raise PrivacyParameterError(
            f"converting zCDP needs 0 < delta < 1, got {delta}; reserve a delta share for it"
        )
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


@dataclass(frozen=True)
class Total:
    """What a sequence of losses adds up to, and by which rule."""

    epsilon: float
    delta: float
    basic_epsilon: float
    basic_delta: float
    rho: float
    zcdp_delta: float


def compose(losses: Iterable[PrivacyLoss]) -> Total:
    """Total (epsilon, delta) of running all ``losses``.

    >>> compose([Loss(0.5, 1e-7), Loss(0.25, 0.0)]).epsilon
    0.75
    """
    basic_eps = basic_delta = rho = zcdp_delta = 0.0
    for loss in losses:
        if loss.rho is None:
            basic_eps += loss.epsilon
            basic_delta += loss.delta
        else:
            rho += loss.rho
            zcdp_delta += loss.delta
    eps = basic_eps + (zcdp_to_epsilon(rho, zcdp_delta) if rho > 0 else 0.0)
    return Total(eps, basic_delta + zcdp_delta, basic_eps, basic_delta, rho, zcdp_delta)
