"""The person registers of one city: population, social insurance, tax, hospital visits.

The population register draws each person's hidden traits (age, sex, urban residence,
education, earning power); the other departments' registers are drawn from those traits, so
they agree with each other the way real registers do, under shared pseudonymous ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sandbox.generate.draws import ids, labels, money, pick
from sandbox.generate.profiles import (
    AGE_BAND_SHARES,
    CONTRIBUTION_BASE,
    DIAGNOSES,
    DIAGNOSIS_TRAITS,
    EDUCATION,
    HOUSEHOLD_TYPES,
    INCOME_OR_REVENUE,
    MAX_VISITS_PER_PERSON,
    REFERENCE_YEAR,
    SEX,
    TAX_PAID,
    TAXPAYER_TYPES,
    VISIT_COST,
    CityProfile,
)

SOCIAL_INSURANCE_SHARE = 0.55
TAXPAYER_SHARE = 0.5
_EPOCH_2024 = 19723  # days from 1970-01-01 to 2024-01-01
_DAYS = 366  # 2024 is a leap year


@dataclass
class Persons:
    """The hidden traits of a city's persons, shared by its departments."""

    ids: pl.Series
    age: np.ndarray
    female: np.ndarray
    urban: np.ndarray
    education: np.ndarray  # 0..5, index into EDUCATION
    earning: np.ndarray  # latent earning power, standard normal, shared across departments


def population(p: CityProfile, n: int, rng: np.random.Generator) -> tuple[pl.DataFrame, Persons]:
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
    person_ids = ids("person_id", f"{p.admin_code}-", np.arange(n), 9)
    frame = pl.DataFrame(
        [
            person_ids,
            pl.Series("birth_year", REFERENCE_YEAR - age, dtype=pl.Int64),
            labels("sex", SEX, female.astype(np.uint8)),
            labels("district", tuple(d.name for d in p.districts), district),
            labels("household_type", HOUSEHOLD_TYPES, (~urban).astype(np.uint8)),
            labels("education", EDUCATION, education),
        ]
    )
    earning = rng.standard_normal(n)
    return frame, Persons(person_ids, age, female, urban, education, earning)


def _age_earnings(age: np.ndarray) -> np.ndarray:
    return np.exp(-0.6 * ((age - 45) / 25) ** 2)


def social_insurance(
    p: CityProfile, persons: Persons, employers: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """Insured persons (mostly working age), employers weighted by size, base by education."""
    age, edu = persons.age, persons.education
    working = np.select([age < 16, age < 60, age < 70], [0.0, 1.0, 0.3], 0.03)
    w = working * (1 + 0.6 * persons.urban) * (0.6 + 0.15 * edu)
    idx = pick(rng, w, round(SOCIAL_INSURANCE_SHARE * age.size))
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
            pl.Series("monthly_contribution_base", money(np.round(base), CONTRIBUTION_BASE)),
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
    return np.asarray(np.maximum(taxable * _IIT_RATE[bracket] - _IIT_QUICK[bracket], 0))


def tax(
    p: CityProfile, persons: Persons, enterprises: pl.DataFrame, rng: np.random.Generator
) -> pl.DataFrame:
    """Individual taxpayers (income and income tax) followed by every enterprise of the city."""
    age, edu = persons.age, persons.education
    w = np.select([age < 18, age < 65, age < 80], [0.0, 1.0, 0.4], 0.1) * (0.5 + 0.2 * edu)
    idx = pick(rng, w, round(TAXPAYER_SHARE * age.size))
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
            labels("taxpayer_type", TAXPAYER_TYPES, np.repeat([0, 1], [k, m])),
            pl.Series(
                "income_or_revenue",
                money(
                    np.concatenate([income, enterprises["annual_revenue"].to_numpy() * 1e4]),
                    INCOME_OR_REVENUE,
                ),
            ),
            pl.Series(
                "tax_paid",
                money(
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


def hospital_visits(p: CityProfile, persons: Persons, rng: np.random.Generator) -> pl.DataFrame:
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
            labels("diagnosis_category", DIAGNOSES, diagnosis[order]),
            pl.Series("cost", money(cost[order], VISIT_COST)),
        ]
    )
