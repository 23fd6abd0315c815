"""The query engine: SQL in, a released DP result out, in two steps a ledger can sit between.

:meth:`QueryEngine.prepare` parses, validates and calibrates a query and states exactly the
(epsilon, delta) its release will cost; nothing is released and no privacy is spent. The
governed path reserves that cost, then :meth:`PreparedQuery.release` runs the OpenDP
measurement once. Every released value comes from an OpenDP measurement; the loss reported is
the measurement's own ``map`` (OpenDP is the accountant). No noise is drawn here.

>>> from sandbox.catalog import load_catalog
>>> engine = QueryEngine(load_catalog("examples/pums"))
>>> prepared = engine.prepare("SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", epsilon=1.0)
>>> prepared.epsilon <= 1.0, prepared.delta
(True, 0.0)
>>> result = prepared.release()
>>> result.group_by, [row["sex"] for row in result.rows()]
(['sex'], [0, 1])
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import opendp.prelude as dp
import polars as pl

from sandbox.catalog import Catalog, DatasetReport
from sandbox.errors import (
    ManifestError,
    PrivacyParameterError,
    QueryError,
    SandboxError,
    UnsupportedQuery,
)
from sandbox.query.calibrate import CACHE_SIZE, Calibrated, Calibrator, Keyed
from sandbox.query.compile import CompiledQuery, compile_plan
from sandbox.query.context import DatasetContext
from sandbox.query.intervals import CONFIDENCE
from sandbox.query.parameters import (
    check_dataset_delta,
    check_min_group_size,
    check_privacy_parameters,
)
from sandbox.query.plan import QueryPlan
from sandbox.query.postprocess import to_result
from sandbox.query.result import QueryResult
from sandbox.query.sql import parse_query


class QueryEngine:
    """Answers SQL over a catalog with OpenDP, one :class:`DatasetContext` per dataset."""

    def __init__(self, catalog: Catalog, frames: dict[str, pl.DataFrame] | None = None):
        self.catalog = catalog
        self._frames = dict(frames or {})
        self._contexts: dict[str, DatasetContext] = {}
        self._contexts_lock = threading.Lock()
        self.calibrator = Calibrator()
        self._plan = functools.lru_cache(CACHE_SIZE)(self._parse)
        self._summary = functools.lru_cache(CACHE_SIZE)(self._summarize)

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
        if not isinstance(sql, str):
            return parse_query(sql, self.catalog)  # refuses it with the reason
        return self._plan(sql)

    def _parse(self, sql: str) -> QueryPlan:
        return parse_query(sql, self.catalog)

    def summary(
        self, measurement: dp.Measurement, key: tuple[Any, ...]
    ) -> dict[str, dict[str, Any]]:
        """OpenDP's description of each released column (mechanism, scale, 95% accuracy)."""
        return self._summary(Keyed(key, measurement))

    @staticmethod
    def _summarize(args: Keyed[dp.Measurement]) -> dict[str, dict[str, Any]]:
        table = dp.summarize_polars_measurement(args.value, alpha=1 - CONFIDENCE)
        return {row["column"]: row for row in table.iter_rows(named=True)}

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
        min_group_size = check_min_group_size(min_group_size)
        plan = sql if isinstance(sql, QueryPlan) else self.plan(sql)
        delta = check_dataset_delta(self.catalog[plan.dataset], delta)
        ctx = self.context(plan.dataset)
        compiled = compile_plan(plan, ctx, min_group_size)
        if compiled.needs_threshold and delta <= 0.0:
            keys = [k for k in plan.group_by if ctx.columns[k].public_keys() is None]
            raise PrivacyParameterError(
                f"GROUP BY {', '.join(keys)}: the keys are not public in the manifest, so the "
                "groups must be selected privately; pass a delta > 0 (for example 1e-6)"
            )
        try:
            calibrated = self.calibrator.calibrate(ctx, compiled, epsilon, delta)
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
        return PreparedQuery(self, ctx, compiled, calibrated, min_group_size)

    def run(
        self,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        min_group_size: int | None = None,
    ) -> QueryResult:
        """Prepare and release in one step (a department previewing its own node)."""
        return self.prepare(sql, epsilon, delta, min_group_size).release()


class PreparedQuery:
    """A calibrated query: its exact cost is known; :meth:`release` runs it once."""

    def __init__(
        self,
        engine: QueryEngine,
        ctx: DatasetContext,
        compiled: CompiledQuery,
        calibrated: Calibrated,
        min_group_size: int | None,
    ):
        self._engine = engine
        self._ctx = ctx
        self._compiled = compiled
        self._measurement = calibrated.measurement
        self.plan = compiled.plan
        self.scales = calibrated.scales
        self.threshold = calibrated.threshold
        self.epsilon, self.delta = calibrated.spent
        self.min_group_size = min_group_size
        self._released = False

    def release(self) -> QueryResult:
        """Run the measurement on the rows (once) and post-process what it released."""
        if self._released:
            raise QueryError("a prepared query is released at most once; prepare it again")
        self._released = True
        try:
            frame = self._ctx.release(self._measurement)
        except (dp.OpenDPException, pl.exceptions.PolarsError) as exc:
            raise QueryError(
                f"the release failed inside the mechanism ({type(exc).__name__}); nothing was "
                "released; try again, and report it if it persists"
            ) from None
        key = (
            self._ctx.manifest.name,
            self.threshold,
            tuple((m.name, m.shape, self.scales[m.name]) for m in self._compiled.mechanisms),
        )
        info = self._engine.summary(self._measurement, key)
        spent = (self.epsilon, self.delta)
        return to_result(info, self._compiled, frame, self.scales, spent, self.min_group_size)
