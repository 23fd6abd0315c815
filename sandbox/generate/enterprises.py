"""The enterprise credit register of one city: default follows a logistic model of risk.

>>> frame = enterprise_frame("dezhou", 1000, seed=0)
>>> frame.height, round(float(frame["default"].mean()), 2)
(1000, 0.13)
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.optimize import brentq

from sandbox.errors import GenerateError
from sandbox.generate.draws import ids, labels, money, sigmoid, stream
from sandbox.generate.profiles import (
    ANNUAL_REVENUE,
    CONTRIBUTION_BASE,
    DATASET_KINDS,
    EMPLOYEES,
    ENTERPRISE_TAX_PAID,
    INDUSTRIES,
    INDUSTRY_TRAITS,
    PROFILE_BY_CODE,
    PROFILES,
    REGISTERED_CAPITAL,
    TAX_ARREARS_MONTHS,
    YEARS_OPERATING,
    CityProfile,
)

PERSONS_PER_ENTERPRISE = 15


def enterprise_count(persons: int) -> int:
    """Enterprises registered in a city with `persons` persons (what `generate` uses)."""
    return max(1, round(persons / PERSONS_PER_ENTERPRISE))


def check_seed(seed: int) -> None:
    """Refuse a seed that is not a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise GenerateError(f"seed must be a non-negative integer, got {seed!r}")


def _intercept(linear: np.ndarray, target: float) -> float:
    """The intercept a with mean(sigmoid(a + linear)) == target."""
    return float(brentq(lambda a: float(sigmoid(a + linear).mean()) - target, -30.0, 30.0))


def enterprise(p: CityProfile, n: int, rng: np.random.Generator) -> pl.DataFrame:
    """The credit register; default follows a logistic model of the observable columns."""
    weights = np.array(p.industry_weights)
    industry = rng.choice(len(INDUSTRIES), n, p=weights / weights.sum())
    traits = {
        f: np.array([getattr(t, f) for t in INDUSTRY_TRAITS])[industry]
        for f in ("employees_median", "revenue_per_employee", "tax_rate", "risk", "wage")
    }
    years = np.clip(np.round(rng.gamma(1.6, p.years_operating / 1.6, n)), *YEARS_OPERATING)
    years = years.astype(np.int64)
    health = rng.standard_normal(n)  # unobserved financial health
    employees = traits["employees_median"] * np.exp(
        0.15 * np.log1p(years) + 0.25 * health + 1.0 * rng.standard_normal(n)
    )
    employees = np.clip(np.ceil(employees), *EMPLOYEES).astype(np.int64)
    capital = 8 * employees**0.8 * np.exp(0.9 * rng.standard_normal(n))
    productivity = np.exp(0.35 * health + 0.5 * rng.standard_normal(n))
    revenue = np.clip(employees * traits["revenue_per_employee"] * productivity, *ANNUAL_REVENUE)
    tax_paid = revenue * traits["tax_rate"] * np.exp(0.3 * rng.standard_normal(n))
    tax_paid *= np.where(health < -1.2, 0.3, 1.0)
    distress = -health + 0.8 * rng.standard_normal(n)
    arrears = np.clip(rng.poisson(np.exp(-1.6 + 0.9 * distress)), *TAX_ARREARS_MONTHS)
    insured_share = sigmoid(1.2 + p.formality + 0.6 * health + 0.8 * rng.standard_normal(n))
    insured = rng.binomial(employees, insured_share)
    base = p.wage * traits["wage"] * np.exp(0.15 * health + 0.2 * rng.standard_normal(n))
    log_odds = (
        traits["risk"]
        + 0.4 * arrears
        - 0.08 * years
        - 3.0 * insured / employees
        - 0.8 * np.log(revenue / employees / traits["revenue_per_employee"] + 1e-3)
        + 0.5 * rng.standard_normal(n)
    )
    default = rng.random(n) < sigmoid(_intercept(log_odds, p.default_rate) + log_odds)
    return pl.DataFrame(
        [
            ids("enterprise_id", f"{p.admin_code}-E", np.arange(n), 8),
            labels("industry", INDUSTRIES, industry),
            pl.Series("employees", employees, dtype=pl.Int64),
            pl.Series("registered_capital", money(capital, REGISTERED_CAPITAL)),
            pl.Series("years_operating", years, dtype=pl.Int64),
            pl.Series("annual_revenue", money(revenue, ANNUAL_REVENUE)),
            pl.Series("tax_paid", money(tax_paid, ENTERPRISE_TAX_PAID)),
            pl.Series("tax_arrears_months", arrears, dtype=pl.Int64),
            pl.Series("insured_employees", insured, dtype=pl.Int64),
            pl.Series("avg_contribution_base", money(np.round(base), CONTRIBUTION_BASE)),
            pl.Series("default", default, dtype=pl.Int64),
        ]
    )


def enterprise_frame(city: str, n: int, seed: int) -> pl.DataFrame:
    """One city's enterprise credit register with `n` enterprises.

    Identical to the `{city}_enterprise` dataset `generate(..., seed=seed)` writes when `n`
    equals that dataset's row count (`enterprise_count` of the city's persons).

    """
    if city not in PROFILE_BY_CODE:
        raise GenerateError(
            f"unknown city {city!r}: use one of {', '.join(p.code for p in PROFILES)}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        raise GenerateError(f"n must be a positive number of enterprises, got {n!r}")
    check_seed(seed)
    n, seed = int(n), int(seed)
    index = [p.code for p in PROFILES].index(city)
    return enterprise(
        PROFILE_BY_CODE[city], n, stream(seed, index, DATASET_KINDS.index("enterprise"))
    )
