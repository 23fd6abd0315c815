"""The hub calibrates a query from public metadata only, so it reserves what the node will
spend rather than the decided upper bound.

OpenDP's privacy map depends on the query, the domain (the manifest's types, bounds,
categories, row bound and privacy unit) and the requested (epsilon, delta), never on the
rows. So the hub builds the query engine's context on an EMPTY frame with the manifest's
schema and runs exactly the calibration the node runs (:meth:`QueryEngine.prepare`). The node
calibrates again on its data and refuses a loss above the signed one; the hub signs and
reserves this calibrated loss. A pure-DP query asked with a delta, for instance, reserves
delta 0.

The calibration is a pure function of (manifest, plan, epsilon, delta, minimum group size),
so the last :data:`CACHE_SIZE` results are kept: a query asked again (a dashboard's) costs a
dictionary look-up instead of about a millisecond of OpenDP.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from policies.loss import PrivacyLoss
from sandbox.catalog import Catalog, Manifest

if TYPE_CHECKING:
    from sandbox.query import QueryEngine
    from sandbox.query.plan import QueryPlan


#: How many calibrations are remembered (least recently used first out).
CACHE_SIZE = 4096


class PublicCalibrator:
    """One query engine per dataset, over an empty frame shaped by its manifest."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Manifest, QueryEngine]] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[object, PrivacyLoss] = OrderedDict()
        self.hits = 0

    def _engine(self, manifest: Manifest) -> QueryEngine:
        with self._lock:
            known = self._engines.get(manifest.name)
            if known is not None and known[0] == manifest:
                return known[1]
            from sandbox.mock import mock_frame  # OpenDP and polars on first use
            from sandbox.query import QueryEngine

            empty = mock_frame(manifest, rows=1).head(0)  # the schema, no rows at all
            catalog = Catalog({manifest.name: manifest}, Path("."))
            engine = QueryEngine(catalog, {manifest.name: empty})
            self._engines[manifest.name] = (manifest, engine)
            return engine

    def loss(
        self,
        manifest: Manifest,
        plan: QueryPlan,
        epsilon: float,
        delta: float,
        min_group_size: int,
    ) -> PrivacyLoss:
        """What the node will spend on ``plan`` at (epsilon, delta): the calibrated loss."""
        key: object = (manifest, plan, epsilon, delta, min_group_size)
        try:
            hash(key)
        except TypeError:  # a plan holding an unhashable literal: calibrate every time
            key = None
        with self._lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        prepared = self._engine(manifest).prepare(plan, epsilon, delta, min_group_size)
        loss = PrivacyLoss.spent(prepared.epsilon, prepared.delta)
        if key is not None:
            with self._lock:
                self._cache[key] = loss
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return loss
