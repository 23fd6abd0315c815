"""Deterministic, seeded synthetic government data for Shandong cities.

`generate(out_dir)` writes, for every city in `CITIES`, five department datasets (population
register, social insurance, tax, hospital visits, enterprise credit register) as Parquet files
with one manifest each (docs/catalog.md), so `out_dir` is directly a catalog. The data are
made up from public parameters (`sandbox.synthetic_profiles`) but carry realistic structure:
education drives wages and income, age drives hospital use and cost, enterprise default
follows a logistic model of observable risk factors, and the cities differ (non-IID).

The same seed gives byte-identical files; every value lies inside the declared bounds and
categories. Example:

>>> from pathlib import Path
>>> report = generate(Path("out/catalog"), rows=10_000, seed=7)  # doctest: +SKIP
>>> report.rows["jinan_population"]  # doctest: +SKIP
3303
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from sandbox.errors import SandboxError
from sandbox.synthetic_profiles import (
    AGE_BAND_SHARES,
    ANNUAL_REVENUE,
    CONTRIBUTION_BASE,
    DATASET_KINDS,
    DIAGNOSES,
    DIAGNOSIS_TRAITS,
    EDUCATION,
    EMPLOYEES,
    ENTERPRISE_TAX_PAID,
    HOUSEHOLD_TYPES,
    INCOME_OR_REVENUE,
    INDUSTRIES,
    INDUSTRY_TRAITS,
    MAX_VISITS_PER_PERSON,
    PROFILE_BY_CODE,
    PROFILES,
    REFERENCE_YEAR,
    REGISTERED_CAPITAL,
    SEX,
    TAX_ARREARS_MONTHS,
    TAX_PAID,
    TAXPAYER_TYPES,
    VISIT_COST,
    YEARS_OPERATING,
    CityProfile,
    manifest,
)

CITIES: dict[str, str] = {p.code: p.name for p in PROFILES}
"""City codes (dataset name prefixes) and their Chinese names, in generation order."""

DATASETS: tuple[str, ...] = DATASET_KINDS
"""Dataset kinds written per city; dataset names are `{city}_{kind}`."""

PERSONS_PER_ENTERPRISE = 15
SOCIAL_INSURANCE_SHARE = 0.55
TAXPAYER_SHARE = 0.5
MIN_ROWS = 100
_EPOCH_2024 = 19723  # days from 1970-01-01 to 2024-01-01
_DAYS = 366  # 2024 is a leap year


class GenerateError(SandboxError, ValueError):
    """Bad input to the generator; the message says what to change."""


@dataclass
class GenerateReport:
    """What `generate` wrote: dataset names, rows per dataset, totals and timing."""

    out_dir: Path
    seed: int
    persons: int
    datasets: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        """Rows written over all datasets."""
        return sum(self.rows.values())

    @property
    def rows_per_s(self) -> float:
        """Throughput of the whole run."""
        return self.total_rows / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------------------- helpers


def _rng(seed: int, city: int, dataset: int) -> np.random.Generator:
    """An independent stream per (seed, city, dataset), stable when other streams change."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(city, dataset)))
    )


def _labels(name: str, labels: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    return pl.Series(name, labels, dtype=pl.String).gather(codes.astype(np.uint32))


def _ids(name: str, prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    digits = pl.Series(name, numbers, dtype=pl.UInt64).cast(pl.String).str.zfill(width)
    return (prefix + digits).alias(name)


def _pick(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability ~ weights (Efraimidis-Spirakis), sorted."""
    k = min(k, weights.size)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.log(rng.random(weights.size)) / np.maximum(weights, 1e-9)
    return np.sort(np.argpartition(-keys, k - 1)[:k])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _money(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return np.round(np.clip(x, *bounds), 2)


def _split(rows: int) -> dict[str, int]:
    """Persons per city, proportional to population, summing exactly to `rows`."""
    shares = np.array([p.population for p in PROFILES]) / sum(p.population for p in PROFILES)
    exact = shares * rows
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: rows - counts.sum()]] += 1
    return {p.code: int(c) for p, c in zip(PROFILES, counts, strict=True)}


def enterprise_count(persons: int) -> int:
    """Enterprises registered in a city with `persons` persons (what `generate` uses)."""
    return max(1, round(persons / PERSONS_PER_ENTERPRISE))


# ------------------------------------------------------------------------ the datasets


@dataclass
class _Persons:
    ids: pl.Series
    age: np.ndarray
    female: np.ndarray
    urban: np.ndarray
    education: np.ndarray  # 0..5, index into EDUCATION
    earning: np.ndarray  # latent earning power, standard normal, shared across departments


def _population(p: CityProfile, n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, _Persons]:
    """The population register, and the hidden traits the other departments depend on."""
    band_age = np.arange(len(AGE_BAND_SHARES)) * 5 + 2.5
    w = np.array(AGE_BAND_SHARES) * np.exp(p.age_tilt * (band_age - 40) / 20)
    age = rng.choice(w.size, n, p=w / w.sum()) * 5 + rng.integers(0, 5, n)
    age = np.minimum(age, REFERENCE_YEAR - 1920)
    female = rng.random(n) < np.where(age >= 75, 0.55, 0.49)
    pop = np.array([d.population for d in p.districts])
    district = rng.choice(pop.size, n, p=pop / pop.sum())
    urban_p = np.array([d.urban for d in p.districts])[district]
    urban = rng.random(n) < np.clip(urban_p + np.where((age >= 18) & (age < 45), 0.05, 0.0), 0, 1)
    score = (
        p.education_shift
        + 0.9 * urban
        - 0.03 * np.maximum(age - 30, 0)
        - 0.15 * (female & (age >= 50))
        + rng.standard_normal(n)
    )
    education = np.searchsorted(np.array([-0.9, 0.55, 1.2, 1.65, 2.55]), score)
    cap = np.select([age < 12, age < 15, age < 18, age < 21, age < 23], [0, 1, 2, 3, 4], 5)
    education = np.minimum(education, cap)
    ids = _ids("person_id", f"{p.admin_code}-", np.arange(n), 9)
    frame = pl.DataFrame(
        [
            ids,
            pl.Series("birth_year", REFERENCE_YEAR - age, dtype=pl.Int64),
            _labels("sex", SEX, female.astype(np.uint8)),
            _labels("district", tuple(d.name for d in p.districts), district),
            _labels("household_type", HOUSEHOLD_TYPES, (~urban).astype(np.uint8)),
            _labels("education", EDUCATION, education),
        ]
    )
    earning = rng.standard_normal(n)
    return frame, _Persons(ids, age, female, urban, education, earning)


def _age_earnings(age: np.ndarray) -> np.ndarray:
    return np.exp(-0.6 * ((age - 45) / 25) ** 2)


def _social_insurance(
    p: CityProfile, persons: _Persons, employers: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """Insured persons (mostly working age), employers weighted by size, base by education."""
    age, edu = persons.age, persons.education
    working = np.select([age < 16, age < 60, age < 70], [0.0, 1.0, 0.3], 0.03)
    w = working * (1 + 0.6 * persons.urban) * (0.6 + 0.15 * edu)
    idx = _pick(rng, w, round(SOCIAL_INSURANCE_SHARE * age.size))
    k = idx.size
    a, e = age[idx], edu[idx]
    size = employers["employees"].to_numpy().astype(float)
    employer = rng.choice(size.size, k, p=size / size.sum())
    base = (
        p.wage
        * np.exp(0.2 * (e - 2))
        * _age_earnings(a) ** 0.6
        * np.exp(0.3 * persons.earning[idx] + 0.2 * rng.standard_normal(k))
    )
    start = 18 + np.array([0, 0, 1, 3, 4, 7])[e]
    coverage = np.where(persons.urban[idx], rng.beta(6, 2, k), rng.beta(3, 3, k))
    months = np.round(np.maximum(np.minimum(a, 60) - start, 0) * 12 * coverage)
    months = np.clip(months, 0, 600).astype(np.int64)
    return pl.DataFrame(
        [
            persons.ids.gather(idx),
            employers["enterprise_id"].gather(employer).alias("employer_id"),
            pl.Series("monthly_contribution_base", _money(np.round(base), CONTRIBUTION_BASE)),
            pl.Series("insured_months", months, dtype=pl.Int64),
        ]
    )


_IIT_UPPER = np.array([36_000, 144_000, 300_000, 420_000, 660_000, 960_000])
_IIT_RATE = np.array([0.03, 0.10, 0.20, 0.25, 0.30, 0.35, 0.45])
_IIT_QUICK = np.array([0, 2_520, 16_920, 31_920, 52_920, 85_920, 181_920])


def _income_tax(income: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """China's annual individual income tax on comprehensive income (2019 schedule)."""
    social = 0.105 * np.clip(income, CONTRIBUTION_BASE[0] * 12, CONTRIBUTION_BASE[1] * 12)
    special = rng.choice(np.array([0, 12_000, 24_000, 36_000, 48_000]), income.size)
    taxable = np.maximum(income - 60_000 - social - special, 0)
    bracket = np.searchsorted(_IIT_UPPER, taxable)
    return np.maximum(taxable * _IIT_RATE[bracket] - _IIT_QUICK[bracket], 0)


def _tax(
    p: CityProfile, persons: _Persons, enterprises: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """Individual taxpayers (income and income tax) followed by every enterprise of the city."""
    age, edu = persons.age, persons.education
    w = np.select([age < 18, age < 65, age < 80], [0.0, 1.0, 0.4], 0.1) * (0.5 + 0.2 * edu)
    idx = _pick(rng, w, round(TAXPAYER_SHARE * age.size))
    k = idx.size
    income = (
        p.wage
        * 12
        * np.exp(0.25 * (edu[idx] - 2))
        * _age_earnings(age[idx])
        * np.exp(0.5 * persons.earning[idx] + 0.3 * rng.standard_normal(k))
    )
    income = np.round(np.clip(income, *INCOME_OR_REVENUE), 2)
    m = enterprises.height
    return pl.DataFrame(
        [
            pl.concat([persons.ids.gather(idx), enterprises["enterprise_id"]]).alias("taxpayer_id"),
            _labels("taxpayer_type", TAXPAYER_TYPES, np.repeat([0, 1], [k, m])),
            pl.Series(
                "income_or_revenue",
                _money(
                    np.concatenate([income, enterprises["annual_revenue"].to_numpy() * 1e4]),
                    INCOME_OR_REVENUE,
                ),
            ),
            pl.Series(
                "tax_paid",
                _money(
                    np.concatenate(
                        [_income_tax(income, rng), enterprises["tax_paid"].to_numpy() * 1e4]
                    ),
                    TAX_PAID,
                ),
            ),
        ]
    )


_DIAGNOSIS_MIX = np.array([d.mix for d in DIAGNOSIS_TRAITS]).T  # age group x diagnosis
_DIAGNOSIS_MIX = _DIAGNOSIS_MIX / _DIAGNOSIS_MIX.sum(axis=1, keepdims=True)
_COST_MULTIPLIER = np.array([d.cost for d in DIAGNOSIS_TRAITS])
_INPATIENT = np.array([d.inpatient for d in DIAGNOSIS_TRAITS])
_PREGNANCY = DIAGNOSES.index("妊娠、分娩和产褥期")
_RESPIRATORY = DIAGNOSES.index("呼吸系统疾病")
_GENITOURINARY = DIAGNOSES.index("泌尿生殖系统疾病")


def _hospital_visits(p: CityProfile, persons: _Persons, rng: np.random.Generator) -> pl.DataFrame:
    """A year of visits: U-shaped rate by age, age-specific diagnoses, winter peak, costs."""
    age, female = persons.age, persons.female
    rate = np.select(
        [age < 5, age < 15, age < 45, age < 60, age < 75], [3.0, 1.4, 1.0, 1.8, 3.2], 4.4
    )
    rate = p.visit_rate * 1.05 * rate * (1 + 0.3 * (female & (age >= 15) & (age < 50)))
    visits = np.minimum(rng.poisson(rng.gamma(1.5, rate / 1.5)), MAX_VISITS_PER_PERSON)
    who = np.repeat(np.arange(age.size), visits)
    m = who.size
    a, f = age[who], female[who]
    season = 1 + 0.3 * np.cos(2 * np.pi * (np.arange(_DAYS) - 15) / _DAYS)
    day = rng.choice(_DAYS, m, p=season / season.sum())
    group = np.searchsorted(np.array([15, 45, 65]), a, side="right")
    diagnosis = np.empty(m, dtype=np.int64)
    for g in range(_DIAGNOSIS_MIX.shape[0]):
        rows = np.flatnonzero(group == g)
        diagnosis[rows] = rng.choice(len(DIAGNOSES), rows.size, p=_DIAGNOSIS_MIX[g])
    winter = (day < 60) | (day >= 305)
    diagnosis[winter & (rng.random(m) < 0.12)] = _RESPIRATORY
    diagnosis[(diagnosis == _PREGNANCY) & ~(f & (a >= 15) & (a < 50))] = _GENITOURINARY
    older = 1 + 0.01 * np.maximum(a - 40, 0)
    inpatient = rng.random(m) < np.minimum(_INPATIENT[diagnosis] * older, 0.9)
    median = np.where(inpatient, 8000.0, 220.0) * _COST_MULTIPLIER[diagnosis] * older
    cost = median * np.exp(np.where(inpatient, 0.7, 0.8) * rng.standard_normal(m))
    order = np.argsort(who.astype(np.int64) * _DAYS + day, kind="stable")
    return pl.DataFrame(
        [
            persons.ids.gather(who[order]),
            pl.Series("visit_date", (_EPOCH_2024 + day[order]).astype(np.int32)).cast(pl.Date),
            _labels("diagnosis_category", DIAGNOSES, diagnosis[order]),
            pl.Series("cost", _money(cost[order], VISIT_COST)),
        ]
    )


def _intercept(linear: np.ndarray, target: float) -> float:
    """The intercept a with mean(sigmoid(a + linear)) == target (bisection)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + linear).mean() < target else (lo, mid)
    return (lo + hi) / 2


def _enterprise(p: CityProfile, n: int, rng: np.random.Generator) -> pl.DataFrame:
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
    insured_share = _sigmoid(1.2 + p.formality + 0.6 * health + 0.8 * rng.standard_normal(n))
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
    default = rng.random(n) < _sigmoid(_intercept(log_odds, p.default_rate) + log_odds)
    return pl.DataFrame(
        [
            _ids("enterprise_id", f"{p.admin_code}-E", np.arange(n), 8),
            _labels("industry", INDUSTRIES, industry),
            pl.Series("employees", employees, dtype=pl.Int64),
            pl.Series("registered_capital", _money(capital, REGISTERED_CAPITAL)),
            pl.Series("years_operating", years, dtype=pl.Int64),
            pl.Series("annual_revenue", _money(revenue, ANNUAL_REVENUE)),
            pl.Series("tax_paid", _money(tax_paid, ENTERPRISE_TAX_PAID)),
            pl.Series("tax_arrears_months", arrears, dtype=pl.Int64),
            pl.Series("insured_employees", insured, dtype=pl.Int64),
            pl.Series("avg_contribution_base", _money(np.round(base), CONTRIBUTION_BASE)),
            pl.Series("default", default, dtype=pl.Int64),
        ]
    )


def enterprise_frame(city: str, n: int, seed: int) -> pl.DataFrame:
    """One city's enterprise credit register with `n` enterprises.

    Identical to the `{city}_enterprise` dataset `generate(..., seed=seed)` writes when `n`
    equals that dataset's row count (`enterprise_count` of the city's persons).

    >>> enterprise_frame("dezhou", 1000, seed=0)["default"].mean()  # doctest: +SKIP
    0.129
    """
    if city not in PROFILE_BY_CODE:
        raise GenerateError(f"unknown city {city!r}: use one of {', '.join(CITIES)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        raise GenerateError(f"n must be a positive number of enterprises, got {n!r}")
    _check_seed(seed)
    n, seed = int(n), int(seed)
    index = list(CITIES).index(city)
    return _enterprise(PROFILE_BY_CODE[city], n, _rng(seed, index, DATASETS.index("enterprise")))


# ---------------------------------------------------------------------------- writing


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise GenerateError(f"seed must be a non-negative integer, got {seed!r}")


def _prepare(out_dir: Path) -> Path:
    try:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".generate-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except (OSError, TypeError, ValueError) as exc:
        raise GenerateError(
            f"cannot write to {out_dir}: {getattr(exc, 'strerror', None) or exc}; "
            "pass an out_dir that is (or can be created as) a writable directory"
        ) from exc
    return out_dir


def _write(out_dir: Path, manifest: dict[str, Any], frame: pl.DataFrame) -> None:
    """Write data then manifest, each through a temporary file, so readers never see halves."""
    data = out_dir / manifest["file"]
    try:
        tmp = data.with_name(data.name + ".tmp")
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, data)
        text = yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False, width=100)
        yml = out_dir / f"{manifest['name']}.yaml"
        tmp = yml.with_name(yml.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, yml)
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise GenerateError(
            f"cannot write {manifest['name']} to {out_dir} ({reason}); free space or pass "
            "another out_dir"
        ) from None


def generate(
    out_dir: Path,
    rows: int = 200_000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> GenerateReport:
    """Write every city's datasets and manifests to `out_dir`, which becomes a catalog.

    `rows` is the number of persons in the population registers summed over cities; the
    other datasets scale from it (social insurance ~0.55x, individual taxpayers ~0.5x plus
    the enterprises, hospital visits ~2x, enterprises ~1/15). Same `seed`, same bytes.

    >>> report = generate(Path("out/catalog"), rows=1_000)  # doctest: +SKIP
    >>> sorted(report.datasets)[:2]  # doctest: +SKIP
    ['dezhou_enterprise', 'dezhou_hospital_visits']
    """
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < MIN_ROWS:
        raise GenerateError(
            f"rows must be an integer of at least {MIN_ROWS} (persons over all cities), "
            f"got {rows!r}"
        )
    _check_seed(seed)
    rows, seed = int(rows), int(seed)
    out_dir = _prepare(out_dir)
    start = time.perf_counter()
    report = GenerateReport(out_dir=out_dir, seed=seed, persons=rows)

    def emit(p: CityProfile, kind: str, frame: pl.DataFrame) -> None:
        meta = manifest(p, kind)
        _write(out_dir, meta, frame)
        report.datasets.append(meta["name"])
        report.rows[meta["name"]] = frame.height
        if progress is not None:
            progress(f"{meta['name']}: {frame.height:,} rows")

    for index, (p, persons) in enumerate(zip(PROFILES, _split(rows).values(), strict=True)):
        streams = {kind: _rng(seed, index, i) for i, kind in enumerate(DATASETS)}
        enterprises = _enterprise(p, enterprise_count(persons), streams["enterprise"])
        population, people = _population(p, persons, streams["population"])
        emit(p, "population", population)
        emit(
            p,
            "social_insurance",
            _social_insurance(p, people, enterprises, streams["social_insurance"]),
        )
        emit(p, "tax", _tax(p, people, enterprises, streams["tax"]))
        emit(p, "hospital_visits", _hospital_visits(p, people, streams["hospital_visits"]))
        emit(p, "enterprise", enterprises)
    report.seconds = time.perf_counter() - start
    return report
