"""A dataset's rows held inside OpenDP, and the domain every query on it is built against.

A :class:`DatasetContext` is built once per dataset for the life of the node: the rows are
checked against the manifest (refused or clamped as it says), converted to the types OpenDP
works with, and handed to a fully adaptive compositor (an odometer). Each query builds its
measurement on an empty frame with the dataset's schema, so no rows are copied per query.

The odometer keeps a record of every query it answered, so a node answering queries for
months would grow without bound (about 3 KB per release). Every :data:`ODOMETER_QUERIES`
releases the context starts a fresh odometer on the same rows and carries the old one's total
forward: :meth:`DatasetContext.odometer_loss` still reports the whole total (by basic
composition, as the odometer itself counts). Budgets are enforced by the ledger and the node's
own store, never by this counter.

>>> from sandbox.catalog import load_catalog
>>> ctx = DatasetContext(load_catalog("examples/pums")["pums"])
>>> ctx.report.ok, ctx.odometer_loss()
(True, (0.0, 0.0))
>>> fixed_point_unit(ColumnSpec(name="income", type="float", bounds=(0, 1_000_000)))
1000
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
from typing import Any, cast

import opendp.prelude as dp
import polars as pl
from opendp.domains import _lazyframe_from_domain

from sandbox.catalog import ColumnSpec, Manifest, conform_frame, load_checked

dp.enable_features("contrib")

#: Every query is an approximate-DP (epsilon, delta) measurement under this measure.
MEASURE = dp.approximate(dp.max_divergence())

#: Releases one odometer answers before the context starts a fresh one (bounded memory).
ODOMETER_QUERIES = 5_000

#: Day 0 of the day numbers dates are held as inside OpenDP.
EPOCH = dt.date(1970, 1, 1)

#: Fixed-point floats keep |value * unit| at or below this, so sums over up to 10^9 rows fit
#: in 64-bit integers.
_FIXED_POINT_RANGE = 1e9


class DatasetContext:
    """One dataset's rows held inside OpenDP, with the domain every query is built against.

    Building it copies the rows into OpenDP once (about 1 s per million rows); queries then
    cost only their own execution. The OpenDP compositor is not thread-safe: a lock
    serialises releases on the same dataset.
    """

    def __init__(self, manifest: Manifest, frame: pl.DataFrame | None = None):
        self.manifest = manifest
        self.columns = {c.name: c for c in manifest.columns if c.role != "identifier"}
        # The rows are checked against the manifest (bounds, categories, row_bound) and
        # clamped or refused as it says, before anything reaches OpenDP.
        if frame is None:
            frame, self.report = load_checked(manifest)
        else:
            frame, self.report = conform_frame(manifest, frame)
        # OpenDP takes no date literals, so date columns live in the context as day numbers
        # (days since 1970-01-01); literals and group keys are converted the same way.
        # Float columns live as fixed-point integers (value * unit, rounded): integer sums have
        # an exact sensitivity, while OpenDP must pad float sums for rounding error, which at
        # large row bounds or with private group keys swamps the signal. Rounding each row is
        # a per-row transformation on the node, so the guarantee holds for the original rows.
        # A float column without bounds is never summed (no public bounds), only filtered and
        # counted, so it stays a float.
        self.units = {
            n: fixed_point_unit(s)
            for n, s in self.columns.items()
            if s.type == "float" and s.bounds is not None
        }
        frame = frame.select(
            pl.col(name).cast(pl.Int64)
            if spec.type == "date"
            else (pl.col(name) * self.units[name]).round().cast(pl.Int64)
            if name in self.units
            else pl.col(name)
            for name, spec in self.columns.items()
        )
        self.domain = _domain(manifest, self.columns)
        self.metric, self.d_in = dp.unit_of(contributions=manifest.privacy_unit.max_rows)
        self._odometer = dp.c.make_fully_adaptive_composition(self.domain, self.metric, MEASURE)
        self._rows = frame.lazy()
        self._queryable = self._odometer(self._rows)
        self._answered = 0
        self._carried = (0.0, 0.0)
        self._empty = _lazyframe_from_domain(self.domain)
        self._lock = threading.Lock()

    def measurement(self, plan: pl.LazyFrame, threshold: int | None = None) -> dp.Measurement:
        """The OpenDP measurement of a plan built on :attr:`empty`."""
        return dp.m.make_private_lazyframe(
            self.domain, self.metric, MEASURE, plan, threshold=threshold
        )

    def loss(self, measurement: dp.Measurement) -> tuple[float, float]:
        """(epsilon, delta) the measurement spends on this dataset's privacy unit."""
        eps, delta = measurement.map(self.d_in)  # type: ignore[no-untyped-call]
        return float(eps), float(delta)

    def release(self, measurement: dp.Measurement) -> pl.DataFrame:
        """Run the measurement on the rows, once, through the odometer."""
        with self._lock:
            if self._answered >= ODOMETER_QUERIES:
                eps, delta = self._queryable.privacy_loss(self.d_in)
                self._carried = (self._carried[0] + eps, self._carried[1] + delta)
                self._queryable = self._odometer(self._rows)
                self._answered = 0
            self._answered += 1
            return cast(pl.DataFrame, self._queryable(measurement).collect())

    def odometer_loss(self) -> tuple[float, float]:
        """Total privacy loss this context has released, as OpenDP's odometer counts it."""
        with self._lock:
            eps, delta = self._queryable.privacy_loss(self.d_in)
            return self._carried[0] + float(eps), self._carried[1] + float(delta)

    @property
    def empty(self) -> pl.LazyFrame:
        """An empty frame with the dataset's schema: what query plans are built on."""
        return cast(pl.LazyFrame, self._empty)


def _domain(manifest: Manifest, columns: dict[str, ColumnSpec]) -> dp.Domain:
    series = [
        dp.series_domain(name, dp.option_domain(_atom_domain(spec)))
        for name, spec in columns.items()
    ]
    domain = dp.lazyframe_domain(series)
    margin = dp.polars.Margin  # type: ignore[attr-defined]
    domain = dp.with_margin(domain, margin(by=[], max_length=manifest.row_bound))
    # Grouping by keys that are not public needs a public bound on the number of groups.
    # No dataset has more groups than rows, so row_bound is always a valid (loose) bound.
    groupable = [name for name, spec in columns.items() if spec.type != "float"]
    for size in (1, 2):
        for by in itertools.combinations(groupable, size):
            domain = dp.with_margin(domain, margin(by=list(by), max_groups=manifest.row_bound))
    return domain


def _atom_domain(spec: ColumnSpec) -> dp.Domain:
    if spec.type == "float" and spec.bounds is None:
        return dp.atom_domain(T=dp.f64, nan=False)
    if spec.type in ("int", "date", "float"):  # bounded floats are held as fixed-point integers
        return dp.atom_domain(T=dp.i64)
    if spec.type == "string":
        return dp.atom_domain(T=dp.String)
    return dp.atom_domain(T=bool)


def fixed_point_unit(spec: ColumnSpec) -> int:
    """The power of ten a float column is scaled by before rounding to an integer."""
    low, high = spec.bounds or (0.0, 1.0)
    largest = max(abs(float(low)), abs(float(high)), 1e-12)
    digits = math.floor(math.log10(_FIXED_POINT_RANGE / largest))
    return int(10 ** min(max(digits, 0), 9))


def day_number(value: Any) -> Any:
    """Dates are held as day numbers inside OpenDP; other values pass through."""
    return (value - EPOCH).days if isinstance(value, dt.date) else value
