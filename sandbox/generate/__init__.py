"""Deterministic, seeded synthetic government data for Shandong cities.

`generate(out_dir)` writes, for every city in `CITIES`, five department datasets (population
register, social insurance, tax, hospital visits, enterprise credit register) as Parquet files
with one manifest each (docs/catalog.md), so `out_dir` is directly a catalog. The data are
made up from public parameters (:mod:`sandbox.generate.profiles`) but carry realistic
structure: education drives wages and income, age drives hospital use and cost, enterprise
default follows a logistic model of observable risk factors, and the cities differ (non-IID).
The same seed gives byte-identical files; every value lies inside the declared bounds and
categories.

* :mod:`~sandbox.generate.profiles` — the public parameters and each dataset's manifest.
* :mod:`~sandbox.generate.persons` — population, social insurance, tax, hospital visits.
* :mod:`~sandbox.generate.enterprises` — the enterprise credit register.
* :mod:`~sandbox.generate.draws` — seeded streams and column helpers.
* :mod:`~sandbox.generate.write` — :func:`generate`: every city, written as a catalog.

>>> CITIES["jinan"], DATASETS[0]
('济南', 'population')
"""

from sandbox.errors import GenerateError
from sandbox.generate.enterprises import PERSONS_PER_ENTERPRISE, enterprise_count, enterprise_frame
from sandbox.generate.persons import SOCIAL_INSURANCE_SHARE, TAXPAYER_SHARE
from sandbox.generate.profiles import DATASET_KINDS, MAX_VISITS_PER_PERSON, PROFILES
from sandbox.generate.write import MIN_ROWS, GenerateReport, generate

CITIES: dict[str, str] = {p.code: p.name for p in PROFILES}
"""City codes (dataset name prefixes) and their Chinese names, in generation order."""

DATASETS: tuple[str, ...] = DATASET_KINDS
"""Dataset kinds written per city; dataset names are `{city}_{kind}`."""

__all__ = [
    "CITIES",
    "DATASETS",
    "MAX_VISITS_PER_PERSON",
    "MIN_ROWS",
    "PERSONS_PER_ENTERPRISE",
    "SOCIAL_INSURANCE_SHARE",
    "TAXPAYER_SHARE",
    "GenerateError",
    "GenerateReport",
    "enterprise_count",
    "enterprise_frame",
    "generate",
]
