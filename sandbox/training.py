"""Governed federated training: a job over catalog datasets, granted, charged and logged.

    firm -> TrainingService.train(firm, purpose, spec)
         -> the accountant predicts each dataset's (epsilon, delta) from the job alone
         -> the policy engine decides for every dataset (model, columns, purpose, per-use cap)
         -> the ledger reserves every dataset's predicted loss before any node trains
         -> Flower trains; each node runs DP-SGD on its own rows (federation package)
         -> the ledger commits the reservations with the SHA-256 of the released model
         -> the firm gets the weights and the model card; the log holds every step

Node ids are dataset names: each department node trains on its own dataset of the catalog.
Features are encoded with public metadata only (bounds and categories of the manifest).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec
from federation.loader import NodeData
from federation.result import TrainingResult
from federation.simulation import run_simulation
from policies.authority import Authority
from policies.grants import Action, ColumnUse
from policies.ledger import Reservation
from policies.requests import ColumnRef, Request
from sandbox.catalog import Catalog, ColumnSpec, load_catalog, load_frame
from sandbox.errors import SandboxError
from sandbox.service import Denied, granted_group_size


class TrainingError(SandboxError):
    """A training job could not be set up from the catalog."""


def encode_column(spec: ColumnSpec, values: np.ndarray) -> np.ndarray:
    """Map a column to model input with public metadata only.

    Categories become their index in the declared list (unknown values: 0); numbers are
    clipped to their public bounds and scaled to [0, 1], on a log scale when the range spans
    orders of magnitude.
    """
    if spec.categories is not None:
        index = {v: i for i, v in enumerate(spec.categories)}
        return np.array([index.get(v, 0) for v in values], dtype=np.float32)
    if spec.bounds is None or not spec.is_numeric:
        raise TrainingError(f"feature {spec.name!r} needs public bounds or categories")
    low, high = (float(b) for b in spec.bounds)
    x = np.clip(np.nan_to_num(values.astype(float), nan=low), low, high) - low
    span = high - low or 1.0
    if low >= 0 and span > 1000:
        return (np.log1p(x) / math.log1p(span)).astype(np.float32)
    return (x / span).astype(np.float32)


@dataclass(frozen=True)
class CatalogLoader:
    """A node's loader: reads its own dataset from the catalog, runs on the node only.

    Picklable (it holds a path and names), so the simulation ships it to each node's worker.
    """

    catalog_root: str
    features: tuple[str, ...]
    label: str
    test_fraction: float = 0.2
    seed: int = 0

    def __call__(self, node_id: str) -> NodeData:
        manifest = load_catalog(self.catalog_root)[node_id]
        frame = load_frame(manifest)
        columns = [encode_column(manifest.column(f), frame[f].to_numpy()) for f in self.features]
        X = np.column_stack(columns).astype(np.float32)
        y = frame[self.label].to_numpy().astype(np.float32)
        order = np.random.default_rng(self.seed).permutation(len(y))
        cut = int(len(y) * (1 - self.test_fraction))
        train, test = order[:cut], order[cut:]
        categorical = {
            f: len(manifest.column(f).categories or ())
            for f in self.features
            if manifest.column(f).categories is not None
        }
        return NodeData(X[train], y[train], X[test], y[test], self.features, categorical)


def categorical_sizes(catalog: Catalog, dataset: str, features: tuple[str, ...]) -> dict[str, int]:
    """Cardinalities of the categorical features, from the manifest (public)."""
    manifest = catalog[dataset]
    return {
        f: len(manifest.column(f).categories or ())
        for f in features
        if manifest.column(f).categories is not None
    }


@dataclass
class GovernedModel:
    """A released model: weights, model card, its digest and where the log recorded it."""

    result: TrainingResult
    model_sha256: str
    release_indexes: dict[str, int] = field(default_factory=dict)

    def model_card(self) -> dict[str, Any]:
        card = self.result.model_card
        return json.loads(card.to_json()) if card is not None else {}


def model_digest(weights: dict[str, np.ndarray] | None) -> str:
    digest = hashlib.sha256()
    for name in sorted(weights or {}):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return digest.hexdigest()


class TrainingService:
    """Runs training jobs over a catalog under the policy authority."""

    def __init__(self, catalog: Catalog, authority: Authority):
        self.catalog = catalog
        self.authority = authority

    def train(
        self,
        firm: str,
        purpose: str,
        spec: JobSpec,
        backend_config: dict[str, Any] | None = None,
    ) -> GovernedModel:
        for node in spec.nodes:
            self.catalog[node]  # unknown datasets fail here, before any decision
        from federation.accounting import predict_cost

        predicted = predict_cost(spec)
        columns = tuple(
            ColumnRef(name=c, use=ColumnUse.AGGREGATE) for c in (*spec.features, spec.label)
        )
        decisions = []
        for node in spec.nodes:
            cost = predicted[node]
            request = Request(
                firm=firm,
                dataset=node,
                purpose=purpose,
                action=Action.TRAIN,
                columns=columns,
                epsilon=cost.epsilon,
                delta=cost.delta,
                min_group_size=granted_group_size(self.authority, firm, node),
                model=spec.model,
            )
            decision = self.authority.decide(request)
            if not decision.permit:
                raise Denied(decision)
            decisions.append(decision)
        reservations: list[Reservation] = []
        try:
            for decision in decisions:
                reservations.append(self.authority.reserve(decision))
        except BaseException:
            for reservation in reservations:
                self.authority.refund(reservation)
            raise
        loader = CatalogLoader(
            str(self.catalog.root), tuple(spec.features), spec.label, seed=spec.seed
        )
        try:
            result = run_simulation(spec, loader, budget=predicted, backend_config=backend_config)
        except (InvalidJobError, BudgetExceededError):
            # Refused before any node trained (the job was checked again): nothing left a node.
            for reservation in reservations:
                self.authority.refund(reservation)
            raise
        # Any other failure leaves the reservations charged: updates may have left the nodes.
        digest = model_digest(result.weights)
        card = json.loads(result.model_card.to_json()) if result.model_card is not None else {}
        released = json.dumps(
            {"model_sha256": digest, "model_card": card},
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        ).encode()
        indexes = {r.dataset: self.authority.commit(r, released) for r in reservations}
        return GovernedModel(result, digest, indexes)


def save_model(model: GovernedModel, out: Path) -> Path:
    """Write the released weights (npz) and model card (json) beside each other."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **(model.result.weights or {}))
    (out / "model_card.json").write_text(
        json.dumps(model.model_card(), ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    return out
