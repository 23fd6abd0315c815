"""The DP query engine: a validated SQL plan, run with OpenDP's Polars integration.

Every released value comes from an OpenDP measurement; the privacy loss reported is the
measurement's own ``map`` (OpenDP is the accountant). No noise is drawn here.

Speed: a dataset's rows are loaded into OpenDP once, into a fully adaptive compositor
(an odometer) that holds them for the life of the node. Each query builds its measurement on
an empty frame with the dataset's schema (no data is copied) and is answered by that
compositor. Noise scales are set in closed form from each mechanism's sensitivity, which is
read off OpenDP (``map`` at scale 1) and cached by query shape, so there is no binary search on
the hot path.

>>> engine = QueryEngine(load_catalog("examples/pums"))                       # doctest: +SKIP
>>> engine.run("SELECT sex, COUNT(*) FROM pums GROUP BY sex", epsilon=1.0)     # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.domains import _lazyframe_from_domain

from policies.bounds import EPSILON_MIN, check_delta, check_epsilon
from policies.errors import PrivacyParameterError as _PolicyPrivacyParameterError
from sandbox.catalog import (
    Catalog,
    ColumnSpec,
    DatasetReport,
    Manifest,
    conform_frame,
    load_checked,
    polars_type,
)
from sandbox.errors import (
    ManifestError,
    PrivacyParameterError,
    QueryError,
    SandboxError,
    UnsupportedQuery,
)
from sandbox.release import AggregateRelease, QueryResult
from sandbox.sql import (
    Aggregate,
    Between,
    BoolOp,
    Compare,
    Condition,
    InList,
    IsNull,
    Negation,
    QueryPlan,
    parse_query,
)

dp.enable_features("contrib")

#: Confidence level of every released interval.
CONFIDENCE = 0.95
#: Largest number of candidates offered to the quantile mechanism.
MAX_QUANTILE_CANDIDATES = 1024
#: Largest number of public group keys (the product of the key columns' sizes).
MAX_PUBLIC_GROUPS = 100_000

_MEASURE = dp.approximate(dp.max_divergence())


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
        series = [
            dp.series_domain(name, dp.option_domain(_atom_domain(spec)))
            for name, spec in self.columns.items()
        ]
        domain = dp.lazyframe_domain(series)
        domain = dp.with_margin(domain, dp.polars.Margin(by=[], max_length=manifest.row_bound))
        # Grouping by keys that are not public needs a public bound on the number of groups.
        # No dataset has more groups than rows, so row_bound is always a valid (loose) bound.
        groupable = [name for name, spec in self.columns.items() if spec.type != "float"]
        for size in (1, 2):
            for by in itertools.combinations(groupable, size):
                margin = dp.polars.Margin(by=list(by), max_groups=manifest.row_bound)
                domain = dp.with_margin(domain, margin)
        self.domain = domain
        self.metric, self.d_in = dp.unit_of(contributions=manifest.privacy_unit.max_rows)
        odometer = dp.c.make_fully_adaptive_composition(self.domain, self.metric, _MEASURE)
        self._queryable = odometer(frame.lazy())
        self._empty = _lazyframe_from_domain(self.domain)
        self._lock = threading.Lock()

    def measurement(self, plan: pl.LazyFrame, threshold: int | None = None) -> dp.Measurement:
        return dp.m.make_private_lazyframe(
            self.domain, self.metric, _MEASURE, plan, threshold=threshold
        )

    def loss(self, measurement: dp.Measurement) -> tuple[float, float]:
        eps, delta = measurement.map(self.d_in)
        return float(eps), float(delta)

    def release(self, measurement: dp.Measurement) -> pl.DataFrame:
        with self._lock:
            return self._queryable(measurement).collect()

    def odometer_loss(self) -> tuple[float, float]:
        """Total privacy loss this context has released, as OpenDP's odometer counts it."""
        with self._lock:
            eps, delta = self._queryable.privacy_loss(self.d_in)
        return float(eps), float(delta)

    @property
    def empty(self) -> pl.LazyFrame:
        return self._empty


def _atom_domain(spec: ColumnSpec) -> dp.Domain:
    if spec.type == "float" and spec.bounds is None:
        return dp.atom_domain(T=dp.f64, nan=False)
    if spec.type in ("int", "date", "float"):  # bounded floats are held as fixed-point integers
        return dp.atom_domain(T=dp.i64)
    if spec.type == "string":
        return dp.atom_domain(T=dp.String)
    return dp.atom_domain(T=bool)


_EPOCH = dt.date(1970, 1, 1)

#: Fixed-point floats keep |value * unit| at or below this, so sums over up to 10^9 rows fit
#: in 64-bit integers.
_FIXED_POINT_RANGE = 1e9


def fixed_point_unit(spec: ColumnSpec) -> int:
    """The power of ten a float column is scaled by before rounding to an integer."""
    low, high = spec.bounds or (0.0, 1.0)
    largest = max(abs(float(low)), abs(float(high)), 1e-12)
    digits = math.floor(math.log10(_FIXED_POINT_RANGE / largest))
    return 10 ** min(max(digits, 0), 9)


def _day_number(value: Any) -> Any:
    """Dates are held as day numbers inside OpenDP; other values pass through."""
    return (value - _EPOCH).days if isinstance(value, dt.date) else value


@dataclass(frozen=True)
class _Mechanism:
    """One noisy statistic in the OpenDP plan; several make up an AVG."""

    name: str  # column name in the released frame
    role: str  # "count" | "sum" | "quantile" | "partition"
    aggregate: Aggregate | None
    expr: Callable[[float], pl.Expr]  # builds the expression at a given scale
    shape: tuple[Any, ...]  # everything its sensitivity depends on
    unit: float = 1.0  # fixed-point unit: released values are divided by it


@dataclass
class _CompiledQuery:
    plan: QueryPlan
    mechanisms: list[_Mechanism]
    shares: dict[str, float]  # mechanism name -> epsilon share
    public_keys: pl.DataFrame | None
    needs_threshold: bool
    count_name: str | None  # a count mechanism usable for min-group-size suppression
    hidden: set[str] = field(default_factory=set)
    key_types: dict[str, str] = field(default_factory=dict)


class QueryEngine:
    """Answers SQL over a catalog with OpenDP, one :class:`DatasetContext` per dataset."""

    def __init__(self, catalog: Catalog, frames: dict[str, pl.DataFrame] | None = None):
        self.catalog = catalog
        self._frames = dict(frames or {})
        self._contexts: dict[str, DatasetContext] = {}
        self._contexts_lock = threading.Lock()
        self._sensitivity_cache: dict[tuple[Any, ...], float] = {}
        self._threshold_cache: dict[tuple[Any, ...], int] = {}
        self._plan_cache: dict[str, QueryPlan] = {}
        self._summary_cache: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}

    def context(self, dataset: str) -> DatasetContext:
        """The dataset's OpenDP context, built (and its rows checked) at first use."""
        with self._contexts_lock:
            ctx = self._contexts.get(dataset)
            if ctx is None:
                manifest = self.catalog[dataset]
                try:
                    ctx = DatasetContext(manifest, self._frames.get(dataset))
                except SandboxError:
                    raise
                except (dp.OpenDPException, pl.exceptions.PolarsError) as exc:
                    raise ManifestError(
                        f"{manifest.path}: the node cannot load {dataset!r} into OpenDP "
                        f"({type(exc).__name__}); check the data against its manifest"
                    ) from None
                self._frames.pop(dataset, None)
                self._contexts[dataset] = ctx
            return ctx

    def check(self, dataset: str) -> DatasetReport:
        """How the dataset's rows matched its manifest when the node loaded them."""
        return self.context(dataset).report

    def plan(self, sql: str) -> QueryPlan:
        """Parse and validate ``sql`` without touching data or spending privacy."""
        plan = self._plan_cache.get(sql) if isinstance(sql, str) else None
        if plan is None:
            plan = parse_query(sql, self.catalog)
            if len(self._plan_cache) >= 4096:
                self._plan_cache.clear()
            self._plan_cache[sql] = plan
        return plan

    def summary(
        self, measurement: dp.Measurement, key: tuple[Any, ...]
    ) -> dict[str, dict[str, Any]]:
        """OpenDP's description of each released column (mechanism, scale, 95% accuracy)."""
        info = self._summary_cache.get(key)
        if info is None:
            table = dp.summarize_polars_measurement(measurement, alpha=1 - CONFIDENCE)
            info = {row["column"]: row for row in table.iter_rows(named=True)}
            if len(self._summary_cache) >= 4096:
                self._summary_cache.clear()
            self._summary_cache[key] = info
        return info

    def prepare(
        self,
        sql: str | QueryPlan,
        epsilon: float,
        delta: float = 0.0,
        min_group_size: int | None = None,
    ) -> PreparedQuery:
        """Validate and calibrate a query; nothing is released and no privacy is spent.

        The prepared query states exactly the (epsilon, delta) its release will cost, so a
        ledger can reserve it before :meth:`PreparedQuery.release` runs the mechanism.
        """
        epsilon, delta = check_privacy_parameters(epsilon, delta)
        if min_group_size is not None and (
            isinstance(min_group_size, bool)
            or not isinstance(min_group_size, int)
            or min_group_size < 0
        ):
            raise QueryError(
                f"min_group_size must be a non-negative integer, got {min_group_size!r}"
            )
        plan = sql if isinstance(sql, QueryPlan) else self.plan(sql)
        delta = check_dataset_delta(self.catalog[plan.dataset], delta)
        ctx = self.context(plan.dataset)
        compiled = _compile(plan, ctx, min_group_size)
        if compiled.needs_threshold and delta <= 0.0:
            keys = [k for k in plan.group_by if ctx.columns[k].public_keys() is None]
            raise PrivacyParameterError(
                f"GROUP BY {', '.join(keys)}: the keys are not public in the manifest, so the "
                "groups must be selected privately; pass a delta > 0 (for example 1e-6)"
            )
        try:
            return self._calibrate(ctx, compiled, epsilon, delta, min_group_size)
        except dp.OpenDPException as exc:
            reason = " ".join(str(exc.message).split())[:300]
            raise UnsupportedQuery(
                f"OpenDP cannot build a private measurement for this query: {reason}"
            ) from None
        except pl.exceptions.PolarsError as exc:
            raise UnsupportedQuery(
                f"this query cannot be planned on {plan.dataset!r} ({type(exc).__name__}); "
                "simplify the conditions"
            ) from None

    def _calibrate(
        self,
        ctx: DatasetContext,
        compiled: _CompiledQuery,
        epsilon: float,
        delta: float,
        min_group_size: int | None,
    ) -> PreparedQuery:
        scales = self._scales(compiled, ctx, epsilon)
        threshold = (
            self._threshold(compiled, ctx, scales, delta) if compiled.needs_threshold else None
        )
        measurement = ctx.measurement(_build_plan(compiled, ctx, scales), threshold)
        spent = ctx.loss(measurement)
        if spent[0] > epsilon * (1 + 1e-9) or spent[1] > delta * (1 + 1e-9):
            raise QueryError(  # a calibration defect: refuse rather than overspend
                f"calibration produced loss {spent} above the requested ({epsilon}, {delta})"
            )
        return PreparedQuery(
            self, ctx, compiled, measurement, scales, spent, min_group_size, threshold
        )

    def run(
        self,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        min_group_size: int | None = None,
    ) -> QueryResult:
        """Prepare and release in one step (a department previewing its own node)."""
        return self.prepare(sql, epsilon, delta, min_group_size).release()

    # -- calibration ------------------------------------------------------------------------

    def _sensitivity(
        self, ctx: DatasetContext, compiled: _CompiledQuery, mech: _Mechanism
    ) -> float:
        """epsilon of this mechanism alone at scale 1, i.e. its sensitivity, from OpenDP."""
        key = (
            ctx.manifest.name,
            compiled.plan.group_by,
            compiled.public_keys is not None,
            compiled.needs_threshold,
            mech.shape,
        )
        cached = self._sensitivity_cache.get(key)
        if cached is not None:
            return cached
        if not compiled.needs_threshold:
            single = _CompiledQuery(
                compiled.plan, [mech], {mech.name: 1.0}, compiled.public_keys, False, None
            )
            cached = ctx.loss(ctx.measurement(_build_plan(single, ctx, {mech.name: 1.0})))[0]
        else:
            # With private keys OpenDP needs the selecting count in every plan: measure the
            # count alone, then the count with this mechanism, and take the difference.
            # The threshold does not change epsilon; the largest one keeps delta out of the way.
            count = compiled.mechanisms[0]
            parts = [count] if mech is count else [count, mech]
            pair = _CompiledQuery(compiled.plan, parts, {}, None, True, None)
            loss = ctx.loss(
                ctx.measurement(
                    _build_plan(pair, ctx, {m.name: 1.0 for m in parts}), threshold=2**32 - 1
                )
            )[0]
            cached = loss if mech is count else loss - self._sensitivity(ctx, compiled, count)
        self._sensitivity_cache[key] = cached
        return cached

    def _scales(
        self, compiled: _CompiledQuery, ctx: DatasetContext, epsilon: float
    ) -> dict[str, float]:
        # For Laplace and the exponential mechanism OpenDP's loss is sensitivity / scale, so the
        # scale for a share of epsilon is sensitivity / share. A hair of slack keeps the sum of
        # rounded-up losses at or under the total asked for.
        slack = 1 + 1e-12
        return {
            m.name: self._sensitivity(ctx, compiled, m)
            / (epsilon * compiled.shares[m.name])
            * slack
            for m in compiled.mechanisms
        }

    def _threshold(
        self, compiled: _CompiledQuery, ctx: DatasetContext, scales: dict[str, float], delta: float
    ) -> int:
        """Smallest partition-selection threshold whose delta fits, found once per shape."""
        partition = next(m for m in compiled.mechanisms if m.role in ("partition", "count"))
        key = (
            ctx.manifest.name,
            compiled.plan.group_by,
            partition.shape,
            scales[partition.name],
            delta,
        )
        cached = self._threshold_cache.get(key)
        if cached is not None:
            return cached
        single = _CompiledQuery(compiled.plan, [partition], {partition.name: 1.0}, None, True, None)
        plan = _build_plan(single, ctx, {partition.name: scales[partition.name]})

        def fits(t: int) -> bool:
            try:
                return ctx.loss(ctx.measurement(plan, t))[1] <= delta
            except dp.OpenDPException:  # thresholds below OpenDP's minimum
                return False

        low, high = 1, 2
        while not fits(high):
            low, high = high, high * 2
            if high > 2**31:
                raise PrivacyParameterError(f"delta {delta} is too small to select groups")
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if fits(mid) else (mid, high)
        self._threshold_cache[key] = high
        return high


def check_privacy_parameters(epsilon: Any, delta: Any) -> tuple[float, float]:
    """Refuse NaN, infinities, non-numbers, epsilon below ``policies.bounds.EPSILON_MIN`` and
    delta outside [0, 1) (the dataset's own delta limit is :func:`check_dataset_delta`)."""
    try:
        return check_epsilon(epsilon), check_delta(delta)
    except _PolicyPrivacyParameterError as exc:
        raise PrivacyParameterError(str(exc)) from None


def check_dataset_delta(manifest: Manifest, delta: Any) -> float:
    """Refuse a delta the dataset does not allow: at or above ``1 / row_bound`` (the manifest's
    public upper bound on its rows), or above its ``max_delta``. Public metadata only, so a
    refusal reveals nothing about the rows."""
    delta = check_privacy_parameters(EPSILON_MIN, delta)[1]
    try:
        return check_delta(delta, rows=manifest.row_bound, max_delta=manifest.max_delta)
    except _PolicyPrivacyParameterError:
        raise PrivacyParameterError(
            f"delta {delta:g} is too large for {manifest.name!r}: it must be "
            f"{manifest.delta_limit()} (row_bound is the manifest's public bound on its rows); "
            "choose a smaller delta"
        ) from None


class PreparedQuery:
    """A calibrated query: its exact cost is known; :meth:`release` runs it once."""

    def __init__(
        self,
        engine: QueryEngine,
        ctx: DatasetContext,
        compiled: _CompiledQuery,
        measurement: dp.Measurement,
        scales: dict[str, float],
        spent: tuple[float, float],
        min_group_size: int | None,
        threshold: int | None = None,
    ):
        self._engine = engine
        self.threshold = threshold
        self._ctx = ctx
        self._compiled = compiled
        self._measurement = measurement
        self.scales = scales
        self.epsilon, self.delta = spent
        self.min_group_size = min_group_size
        self.plan = compiled.plan
        self._released = False

    def release(self) -> QueryResult:
        if self._released:
            raise QueryError("a prepared query is released at most once; prepare it again")
        self._released = True
        try:
            frame = self._ctx.release(self._measurement)
        except (dp.OpenDPException, pl.exceptions.PolarsError) as exc:
            raise QueryError(
                f"the release failed inside the mechanism ({type(exc).__name__}); nothing was "
                "released"
            ) from None
        key = (
            self._ctx.manifest.name,
            self.threshold,
            tuple((m.name, m.shape, self.scales[m.name]) for m in self._compiled.mechanisms),
        )
        info = self._engine.summary(self._measurement, key)
        return _postprocess(
            info,
            self._compiled,
            frame,
            self.scales,
            self.epsilon,
            self.delta,
            self.min_group_size,
        )


# -- compiling a plan to OpenDP -------------------------------------------------------------


def _compile(plan: QueryPlan, ctx: DatasetContext, min_group_size: int | None) -> _CompiledQuery:
    mechanisms: list[_Mechanism] = []
    shares: dict[str, float] = {}
    key_specs = [ctx.columns[k] for k in plan.group_by]
    public = all(s.public_keys() is not None for s in key_specs)
    public_keys = _public_keys(key_specs) if plan.group_by and public else None
    needs_threshold = bool(plan.group_by) and not public
    n_aggs = len(plan.aggregates)
    count_name = None
    for i, agg in enumerate(plan.aggregates):
        parts = _mechanisms_for(agg, i, ctx)
        for part in parts:
            mechanisms.append(part)
            shares[part.name] = 1.0 / len(parts)
        if agg.kind == "count" and agg.column is None and count_name is None:
            count_name = parts[0].name
    hidden: set[str] = set()
    wants_count = needs_threshold or (min_group_size is not None and plan.group_by)
    if wants_count and count_name is None:
        # Partition selection and small-group suppression need a noisy row count per group.
        # It is one more mechanism, and takes its share of epsilon like any aggregate.
        hidden_count = _count_star("__rows", None)
        mechanisms.append(hidden_count)
        shares[hidden_count.name] = 1.0
        count_name = hidden_count.name
        hidden.add(hidden_count.name)
        n_aggs += 1
    # Every aggregate (and a hidden count) gets an equal share of epsilon; AVG splits its
    # share between its sum and its count.
    for m in mechanisms:
        shares[m.name] = shares[m.name] / n_aggs
    if needs_threshold:
        # OpenDP selects groups with the first count in the plan: put it first.
        mechanisms.sort(key=lambda m: m.name != count_name)
    key_types = {k: ctx.columns[k].type for k in plan.group_by}
    return _CompiledQuery(
        plan, mechanisms, shares, public_keys, needs_threshold, count_name, hidden, key_types
    )


def _public_keys(specs: Sequence[ColumnSpec]) -> pl.DataFrame:
    keys = [spec.public_keys() or () for spec in specs]
    size = math.prod(len(k) for k in keys)
    if size > MAX_PUBLIC_GROUPS:
        raise UnsupportedQuery(
            f"grouping by {[s.name for s in specs]} makes {size} groups; at most "
            f"{MAX_PUBLIC_GROUPS} are supported"
        )
    rows = [tuple(_day_number(v) for v in row) for row in itertools.product(*keys)]
    schema = {s.name: pl.Int64 if s.type == "date" else polars_type(s.type) for s in specs}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _count_star(name: str, agg: Aggregate | None) -> _Mechanism:
    return _Mechanism(
        name, "count", agg, lambda s: dp.len(scale=s, signed=True).alias(name), ("len",)
    )


def _mechanisms_for(agg: Aggregate, index: int, ctx: DatasetContext) -> list[_Mechanism]:
    base = f"__a{index}"
    if agg.kind == "count":
        if agg.column is None:
            return [_count_star(base, agg)]
        column = agg.column
        return [
            _Mechanism(
                base,
                "count",
                agg,
                lambda s: pl.col(column).dp.count(scale=s, signed=True).alias(base),
                ("count", column),
            )
        ]
    spec = ctx.columns[agg.column or ""]
    low, high = spec.bounds or (0, 0)
    unit = ctx.units.get(spec.name, 1)
    if spec.type == "float":
        low, high = round(low * unit), round(high * unit)
    fill = min(max(0, low), high)
    column = spec.name
    if agg.kind == "quantile":
        candidates = _candidates(low, high)
        q = agg.quantile or 0.5
        return [
            _Mechanism(
                base,
                "quantile",
                agg,
                lambda s: (
                    pl.col(column).fill_null(fill).dp.quantile(q, candidates, scale=s).alias(base)
                ),
                ("quantile", column, q, len(candidates)),
                unit,
            )
        ]
    total = _Mechanism(
        f"{base}_sum",
        "sum",
        agg,
        lambda s: pl.col(column).fill_null(fill).dp.sum((low, high), scale=s).alias(f"{base}_sum"),
        ("sum", column, low, high),
        unit,
    )
    if agg.kind == "sum":
        return [total]
    count = _Mechanism(
        f"{base}_n",
        "count",
        agg,
        lambda s: pl.col(column).dp.count(scale=s, signed=True).alias(f"{base}_n"),
        ("count", column),
    )
    return [total, count]


def _candidates(low: int, high: int) -> list[int]:
    """Quantile candidates over integer (or fixed-point) bounds."""
    if high - low + 1 <= MAX_QUANTILE_CANDIDATES:
        return list(range(low, high + 1))
    return sorted({int(round(p)) for p in np.linspace(low, high, MAX_QUANTILE_CANDIDATES)})


def _condition_expr(cond: Condition, units: dict[str, int]) -> pl.Expr:
    def lit(column: str, value: Any) -> pl.Expr:
        if column in units:
            return pl.lit(float(value) * units[column])
        return pl.lit(_day_number(value))

    if isinstance(cond, Compare):
        col, value = pl.col(cond.column), lit(cond.column, cond.value)
        return {
            "==": col == value,
            "!=": col != value,
            "<": col < value,
            "<=": col <= value,
            ">": col > value,
            ">=": col >= value,
        }[cond.op]
    if isinstance(cond, InList):  # OpenDP does not take is_in; an OR of equalities is the same
        return _balanced(
            [pl.col(cond.column) == lit(cond.column, v) for v in cond.values], lambda a, b: a | b
        )
    if isinstance(cond, Between):
        col = pl.col(cond.column)
        return (col >= lit(cond.column, cond.low)) & (col <= lit(cond.column, cond.high))
    if isinstance(cond, IsNull):
        return pl.col(cond.column).is_null()
    if isinstance(cond, Negation):
        return ~_condition_expr(cond.part, units)
    if isinstance(cond, BoolOp):
        exprs = [_condition_expr(p, units) for p in cond.parts]
        op = (lambda a, b: a & b) if cond.op == "and" else (lambda a, b: a | b)
        return _balanced(exprs, op)
    raise TypeError(cond)  # pragma: no cover - parse_query builds only the types above


def _balanced(exprs: list[pl.Expr], op: Callable[[pl.Expr, pl.Expr], pl.Expr]) -> pl.Expr:
    """Combine with an associative operator as a balanced tree: depth log2(n), not n. A chain
    of thousands of ORs overflows the native stack of the plan's (de)serialiser."""
    while len(exprs) > 1:
        paired = [op(exprs[i], exprs[i + 1]) for i in range(0, len(exprs) - 1, 2)]
        if len(exprs) % 2:
            paired.append(exprs[-1])
        exprs = paired
    return exprs[0]


def _build_plan(
    compiled: _CompiledQuery, ctx: DatasetContext, scales: dict[str, float]
) -> pl.LazyFrame:
    frame = ctx.empty
    plan = compiled.plan
    if plan.where is not None:
        frame = frame.filter(_condition_expr(plan.where, ctx.units))
    exprs = [m.expr(scales[m.name]) for m in compiled.mechanisms]
    if not plan.group_by:
        return frame.select(exprs)
    grouped = frame.group_by(list(plan.group_by)).agg(exprs)
    if compiled.public_keys is None:
        return grouped
    keys = compiled.public_keys.lazy()
    return keys.join(grouped, how="left", on=list(plan.group_by), nulls_equal=True)


# -- turning the released frame into a result -------------------------------------------------


def _postprocess(
    info: dict[str, dict[str, Any]],
    compiled: _CompiledQuery,
    frame: pl.DataFrame,
    scales: dict[str, float],
    epsilon: float,
    delta: float,
    min_group_size: int | None,
) -> QueryResult:
    plan = compiled.plan
    suppressed = 0
    if min_group_size is not None and compiled.count_name and plan.group_by:
        keep = frame[compiled.count_name] >= min_group_size
        suppressed = int((~keep).sum())
        frame = frame.filter(keep)
    if plan.group_by:
        frame = frame.sort(list(plan.group_by)).with_columns(
            (pl.lit(_EPOCH) + pl.duration(days=pl.col(k))).alias(k)
            for k in plan.group_by
            if compiled.key_types.get(k) == "date"
        )
    releases: dict[str, AggregateRelease] = {}
    columns: dict[str, list[Any]] = {k: frame[k].to_list() for k in plan.group_by}
    by_agg: dict[int, list[_Mechanism]] = {}
    for m in compiled.mechanisms:
        if m.aggregate is not None:
            by_agg.setdefault(id(m.aggregate), []).append(m)
    for agg in plan.aggregates:
        parts = by_agg[id(agg)]
        values, intervals = _values_and_intervals(agg, parts, frame, info)
        columns[agg.alias] = values
        releases[agg.alias] = AggregateRelease(
            name=agg.alias,
            kind=agg.kind,
            column=agg.column,
            quantile=agg.quantile,
            mechanisms=[
                {
                    "statistic": m.role,
                    "mechanism": info[m.name]["distribution"],
                    "scale": scales[m.name] / (m.unit if m.role == "sum" else 1),
                    "epsilon": epsilon * compiled.shares[m.name],
                }
                for m in parts
            ],
            epsilon=epsilon * sum(compiled.shares[m.name] for m in parts),
            intervals=intervals,
        )
    extra = []
    for name in sorted(compiled.hidden):
        extra.append(
            {
                "statistic": "row count (group selection)",
                "mechanism": info[name]["distribution"],
                "scale": scales[name],
                "epsilon": epsilon * compiled.shares[name],
            }
        )
    thresholds = [row.get("threshold") for row in info.values() if row.get("threshold")]
    threshold = int(thresholds[0]) if thresholds else None
    return QueryResult(
        sql=plan.sql,
        dataset=plan.dataset,
        outputs=[o if isinstance(o, str) else o.alias for o in plan.outputs],
        group_by=list(plan.group_by),
        columns=columns,
        aggregates=releases,
        epsilon_spent=epsilon,
        delta_spent=delta,
        confidence=CONFIDENCE,
        extra_mechanisms=extra,
        selection_threshold=threshold,
        suppressed_groups=suppressed,
        order_by=list(plan.order_by),
        limit=plan.limit,
    )


def _values_and_intervals(
    agg: Aggregate, parts: list[_Mechanism], frame: pl.DataFrame, info: dict[str, dict[str, Any]]
) -> tuple[list[Any], list[tuple[float, float] | None]]:
    if agg.kind in ("count", "sum"):
        m = parts[0]
        acc = _accuracy(info[m.name]) / m.unit
        raw = [v if v is None or m.unit == 1 else v / m.unit for v in frame[m.name].to_list()]
        if agg.kind == "count":  # clamping at zero is post-processing; the interval stays valid
            values = [None if v is None else max(0, v) for v in raw]
            intervals = [None if v is None else (max(0.0, v - acc), max(0.0, v + acc)) for v in raw]
        else:
            values = raw
            intervals = [None if v is None else (v - acc, v + acc) for v in raw]
        return values, intervals
    if agg.kind == "quantile":
        # OpenDP gives no value-space accuracy for the exponential mechanism: the error is in
        # rank, and turning it into values would need the data's distribution.
        unit = parts[0].unit
        values = [v if v is None or unit == 1 else v / unit for v in frame[parts[0].name].to_list()]
        return values, [None] * len(values)
    unit = parts[0].unit
    sums = frame[parts[0].name].to_numpy().astype(float) / unit
    counts = frame[parts[1].name].to_numpy().astype(float)
    scale_sum = float(info[parts[0].name]["scale"]) / unit
    scale_n = float(info[parts[1].name]["scale"])
    values, intervals = _mean_intervals(sums, counts, scale_sum, scale_n)
    # A mean lies within the column's public bounds: clamping both the estimate and the
    # interval to them is post-processing, and keeps every interval that held the truth.
    spec_bounds = parts[0].shape[2:4]
    low, high = float(spec_bounds[0]) / unit, float(spec_bounds[1]) / unit
    values = [None if v is None else min(max(v, low), high) for v in values]
    intervals = [
        None if i is None else (min(max(i[0], low), high), min(max(i[1], low), high))
        for i in intervals
    ]
    return values, intervals


def _accuracy(row: dict[str, Any]) -> float:
    """Half-width of the 95% interval OpenDP states for a Laplace release."""
    acc = row.get("accuracy")
    if acc is None or not math.isfinite(acc):
        # OpenDP's discrete accuracy overflows at tiny scales; the continuous bound is larger
        # than the discrete one, so it is still a valid 95% half-width.
        acc = dp.laplacian_scale_to_accuracy(float(row["scale"]), 1 - CONFIDENCE)
    return float(acc)


def _mean_intervals(
    sums: np.ndarray, counts: np.ndarray, scale_sum: float, scale_n: float
) -> tuple[list[Any], list[tuple[float, float] | None]]:
    """AVG = noisy sum / noisy count, with a 95% interval for the ratio (post-processing only).

    To first order the error of S'/N' is (e_S - m * e_N) / N with e_S, e_N independent
    Laplace errors, so it is the difference of two Laplace variables of scales
    p = scale_sum / N and q = |m| * scale_n / N, whose tail has a closed form. The released
    values stand in for the unknown N and m.
    """
    values: list[Any] = []
    intervals: list[tuple[float, float] | None] = []
    for s, n in zip(sums, counts, strict=True):
        if not np.isfinite(s) or not np.isfinite(n) or n < 1:
            values.append(None)
            intervals.append(None)
            continue
        mean = float(s / n)
        half = _laplace_difference_quantile(scale_sum / n, abs(mean) * scale_n / n, 1 - CONFIDENCE)
        values.append(mean)
        intervals.append((float(mean - half), float(mean + half)))
    return values, intervals


def _laplace_difference_quantile(p: float, q: float, alpha: float) -> float:
    """z with P(|X - Y| > z) = alpha for independent Laplace X (scale p) and Y (scale q)."""
    p, q = max(p, q), min(p, q)
    if q <= p * 1e-9:
        return p * math.log(1 / alpha)

    def tail(z: float) -> float:  # P(|X - Y| > z), z >= 0
        if abs(p - q) <= 1e-12 * p:
            return math.exp(-z / p) * (2 + z / p) / 2
        return (p * p * math.exp(-z / p) - q * q * math.exp(-z / q)) / (p * p - q * q)

    low, high = 0.0, (p + q) * math.log(2 / alpha) * 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if tail(mid) > alpha else (low, mid)
    return high
