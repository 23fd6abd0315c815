"""Writing every city's datasets and manifests to a directory, which becomes a catalog.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     report = generate(Path(out), rows=1_000, seed=7)
...     sorted(report.datasets)[:2], report.rows["jinan_population"]
(['dezhou_enterprise', 'dezhou_hospital_visits'], 330)
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

from sandbox.errors import GenerateError
from sandbox.generate.draws import stream
from sandbox.generate.enterprises import check_seed, enterprise, enterprise_count
from sandbox.generate.persons import hospital_visits, population, social_insurance, tax
from sandbox.generate.profiles import DATASET_KINDS, PROFILES, CityProfile, manifest

#: The fewest persons `generate` accepts (over all cities).
MIN_ROWS = 100


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


def _split(rows: int) -> dict[str, int]:
    """Persons per city, proportional to population, summing exactly to `rows`."""
    shares = np.array([p.population for p in PROFILES]) / sum(p.population for p in PROFILES)
    exact = shares * rows
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: rows - counts.sum()]] += 1
    return {p.code: int(c) for p, c in zip(PROFILES, counts, strict=True)}


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


def _write(out_dir: Path, meta: dict[str, Any], frame: pl.DataFrame) -> None:
    """Write data then manifest, each through a temporary file, so readers never see halves."""
    data = out_dir / meta["file"]
    try:
        tmp = data.with_name(data.name + ".tmp")
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        os.replace(tmp, data)
        text = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=100)
        yml = out_dir / f"{meta['name']}.yaml"
        tmp = yml.with_name(yml.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, yml)
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise GenerateError(
            f"cannot write {meta['name']} to {out_dir} ({reason}); free space or pass "
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

    """
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < MIN_ROWS:
        raise GenerateError(
            f"rows must be an integer of at least {MIN_ROWS} (persons over all cities), "
            f"got {rows!r}"
        )
    check_seed(seed)
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
        streams = {kind: stream(seed, index, i) for i, kind in enumerate(DATASET_KINDS)}
        enterprises = enterprise(p, enterprise_count(persons), streams["enterprise"])
        register, people = population(p, persons, streams["population"])
        emit(p, "population", register)
        emit(
            p,
            "social_insurance",
            social_insurance(p, people, enterprises, streams["social_insurance"]),
        )
        emit(p, "tax", tax(p, people, enterprises, streams["tax"]))
        emit(p, "hospital_visits", hospital_visits(p, people, streams["hospital_visits"]))
        emit(p, "enterprise", enterprises)
    report.seconds = time.perf_counter() - start
    return report
