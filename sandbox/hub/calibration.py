"""The hub calibrates a query from public metadata only, so it reserves what the node will
spend rather than the decided upper bound.

OpenDP's privacy map depends on the query, the domain (the manifest's types, bounds,
categories, row bound and privacy unit) and the requested (epsilon, delta), never on the
rows. So the hub builds the query engine's context on an EMPTY frame with the manifest's
schema and runs exactly the calibration the node runs (:meth:`QueryEngine.prepare`). The node
calibrates again on its data and refuses a loss above the signed one; the hub signs and
reserves this calibrated loss. A pure-DP query asked with a delta, for instance, reserves
delta 0.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from policies.loss import PrivacyLoss
from sandbox.catalog import Catalog, Manifest

if TYPE_CHECKING:
    from sandbox.query import QueryEngine
    from sandbox.query.plan import QueryPlan


class PublicCalibrator:
    """One query engine per dataset, over an empty frame shaped by its manifest."""

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Manifest, QueryEngine]] = {}
        self._lock = threading.Lock()

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
        prepared = self._engine(manifest).prepare(plan, epsilon, delta, min_group_size)
        return PrivacyLoss.spent(prepared.epsilon, prepared.delta)
