"""The accountant: the epsilon of Poisson-subsampled Gaussian steps (DP-SGD steps on a node, or
client-level rounds on the server) from Opacus' RDP or PRV accountant, and the smallest noise
that meets a target. Pure functions, memoized: an identical calculation costs once per process.

Jobs reach it through :func:`federation.accounting.plan_job`, once per job.

>>> round(dpsgd_epsilon(1.0, 0.01, 1000, 1e-5), 3)
2.101
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

from federation.errors import InvalidJobError


@dataclass(frozen=True)
class PrivacyCost:
    """An (epsilon, delta) privacy loss on one dataset, with its parts."""

    epsilon: float
    delta: float
    components: Mapping[str, float] = field(default_factory=dict)

    def within(self, budget: PrivacyCost) -> bool:
        """True if this cost fits in ``budget`` (both epsilon and delta)."""
        return self.epsilon <= budget.epsilon and self.delta <= budget.delta


def dpsgd_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta``.

    >>> round(dpsgd_epsilon(1.0, 0.01, 1000, 1e-5), 3)
    2.101
    """
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    return _epsilon(float(noise_multiplier), float(sample_rate), int(steps), delta, accountant)


@lru_cache(maxsize=1024)
def _epsilon(sigma: float, q: float, steps: int, delta: float, accountant: str) -> float:
    acc = create_accountant(mechanism=accountant)
    acc.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        # Opacus warns when the optimal RDP order is the largest one; the bound stays valid.
        warnings.filterwarnings("ignore", message="Optimal order")
        return float(acc.get_epsilon(delta=delta))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
) -> float:
    """Smallest noise multiplier (to 0.01 in epsilon) whose epsilon is at most the target.

    >>> sigma = calibrate_noise_multiplier(1.0, 1e-5, 0.01, 1000)
    >>> dpsgd_epsilon(sigma, 0.01, 1000, 1e-5) <= 1.0
    True
    """
    return _calibrated(float(target_epsilon), float(delta), float(sample_rate), steps, accountant)


@lru_cache(maxsize=256)
def _calibrated(target: float, delta: float, q: float, steps: int, accountant: str) -> float:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order")
            sigma = float(
                get_noise_multiplier(
                    target_epsilon=target,
                    target_delta=delta,
                    sample_rate=q,
                    steps=steps,
                    accountant=accountant,
                    epsilon_tolerance=0.01,
                )
            )
    except ValueError as exc:
        raise InvalidJobError(
            f"target epsilon {target} is too small for {steps} steps at sample rate {q}; "
            "raise the epsilon, or lower the rounds, epochs or sample rate"
        ) from exc
    if dpsgd_epsilon(sigma, q, steps, delta, accountant) > target:
        raise InvalidJobError(
            f"noise calibration did not reach the target epsilon {target}; raise the epsilon "
            "or give noise_multiplier instead"
        )
    return sigma


def client_level_epsilon(
    noise_multiplier: float, client_sample_rate: float, rounds: int, delta: float
) -> float:
    """Epsilon (add/remove one node) after ``rounds`` Poisson-subsampled Gaussian releases.

    >>> round(client_level_epsilon(1.0, 0.1, 100, 1e-5), 1)
    7.9
    """
    return dpsgd_epsilon(noise_multiplier, client_sample_rate, rounds, delta, "rdp")
