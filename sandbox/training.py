"""Governed federated training: a job over catalog datasets, granted, charged and logged.

    firm -> TrainingService.train(firm, purpose, spec)
         -> the job is planned once: each node's DP-SGD parameters and each dataset's
            predicted (epsilon, delta), from the job alone
         -> the policy engine decides for every dataset (model, columns, purpose, per-use cap)
         -> Authority.use (the path queries take too): the ledger reserves every dataset's
            predicted loss before any node trains; each department's node records the
            approved plan in its own store; Flower trains, each node checking every message
            against that approval and running DP-SGD on its own rows (federation package);
            the ledger commits the reservations with the SHA-256 of the released model
         -> the firm gets the weights and the model card; the log holds every step

Node ids are dataset names: each department node trains on its own dataset of the catalog.
Features are encoded with public metadata only (bounds and categories of the manifest).

On the node, a dataset becomes training rows as follows (:class:`CatalogLoader`):

* one row per person: when the manifest's privacy unit allows several rows per person
  (``max_rows > 1``), the node keeps one of them, chosen by a keyed hash, so that DP-SGD's
  per-row guarantee is a per-person guarantee (and the DP counts have sensitivity one person);
* train/test split by a keyed hash: each row (or each person, when the manifest names an
  identifier) goes to the test side iff ``HMAC-SHA256(node secret, identifier or row
  content)`` falls below the test fraction, so a row's side depends on that row alone and
  removing one row moves no other row.

A failed job is refunded only when every node confirms that nothing left it under the job
(its step, row-count and evaluation tallies for the grant are unchanged); otherwise the
reservation is committed (charged) and the failure logged as the release.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from federation.accounting import JobPlan, PrivacyCost, plan_job
from federation.job import JobSpec
from federation.loader import NodeData
from federation.node_store import Approval, NodeStore, Usage, node_state_dir, plan_approvals
from federation.result import TrainingResult
from federation.simulation import run_simulation
from policies.authority import Authority
from policies.decision import Decision
from policies.grants import Action, ColumnUse
from policies.ledger import Reservation
from policies.requests import ColumnRef, Request
from policies.use import Outcome
from sandbox.catalog import Catalog, ColumnSpec, Manifest, load_catalog, load_frame
from sandbox.errors import Denied
from sandbox.errors import TrainingError as TrainingError  # re-exported: raised here
from sandbox.query import check_dataset_delta

logger = logging.getLogger(__name__)

#: An array of model input or a weight tensor of a released model.
Array = np.ndarray[Any, np.dtype[Any]]


def encode_column(spec: ColumnSpec, values: Array) -> Array:
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
    scaled: Array = np.log1p(x) / math.log1p(span) if low >= 0 and span > 1000 else x / span
    return scaled.astype(np.float32)


def encode_label(
    values: list[Any],
    positive: str | None,
    label: str = "label",
    classes: tuple[str, ...] | None = None,
) -> Array:
    """The label as classes 0/1 for a binary model, or as class indices for a multi-class one.

    With ``classes`` (the job's ``classes: [a, b, c]``), a row's value, as text, becomes its
    index in ``classes``; a row whose value is not listed (missing values included) is refused
    with a message naming the label column, never the value.

    With ``positive`` (the job's ``positive: ">50K"``), a row is 1 iff its value, as text,
    equals ``positive`` (numbers compare by their text: ``positive: "1"`` matches 1 and
    ``"1.0"`` matches 1.0); everything else, missing values included, is 0. Without it the
    label must already hold only 0 and 1 (missing: 0); other values are refused with a
    message naming the fix.

    >>> encode_label([">50K", "<=50K", None], ">50K").tolist()
    [1.0, 0.0, 0.0]
    >>> encode_label([0, 1, 1], None).tolist()
    [0.0, 1.0, 1.0]
    >>> encode_label(["b", "c", "a"], None, classes=("a", "b", "c")).tolist()
    [1.0, 2.0, 0.0]
    """
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        out_classes = np.zeros(len(values), dtype=np.float32)
        for i, value in enumerate(values):
            position = None if value is None else index.get(str(value))
            if position is None:
                raise TrainingError(
                    f"label {label!r} holds a value that is not among the job's classes "
                    f"({len(classes)} listed); list every value the column holds in classes"
                )
            out_classes[i] = float(position)
        return out_classes
    if positive is not None:
        return np.array([v is not None and str(v) == positive for v in values], dtype=np.float32)
    out = np.zeros(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, bool | int | float) and value in (0, 1):
            out[i] = float(value)
            continue
        raise TrainingError(
            f"label {label!r} holds values other than 0 and 1; name the positive class in the "
            f'job (for example positive: ">50K"); every other value becomes class 0'
        )
    return out


def _unit(secret: bytes, purpose: bytes, key: bytes) -> float:
    """HMAC-SHA256 of ``key`` under the node's secret, as a number in [0, 1)."""
    mac = hmac.new(secret, purpose + b"\0" + key, hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") / 2**64


def _row_keys(frame: pl.DataFrame) -> list[bytes]:
    """Each row's canonical content (column names and values as JSON)."""
    names = frame.columns
    return [
        json.dumps(dict(zip(names, row, strict=True)), sort_keys=True, default=str).encode()
        for row in frame.iter_rows()
    ]


def person_rows(manifest: Manifest, secret: bytes) -> pl.DataFrame:
    """The dataset's rows as the node trains on them: at most one row per person.

    With an identifier column (``privacy_unit.id_column``) the identifier is kept (it keys the
    split) and, when a person may have several rows, the one whose keyed hash of its content
    is smallest is kept: deterministic for a node, unpredictable without its secret, and
    independent of the other persons' rows.
    """
    unit = manifest.privacy_unit.id_column
    if unit is not None:
        # Keep the identifier through loading: it keys the selection and the split.
        columns = tuple(
            c.model_copy(update={"role": "attribute"}) if c.name == unit else c
            for c in manifest.columns
        )
        manifest = manifest.model_copy(update={"columns": columns})
    frame = load_frame(manifest)
    if unit is not None and manifest.privacy_unit.max_rows > 1 and frame.height:
        rank = [_unit(secret, b"person-row", k) for k in _row_keys(frame)]
        frame = (
            frame.with_columns(pl.Series("__rank", rank, dtype=pl.Float64))
            .with_row_index("__order")
            .filter(pl.col("__rank") == pl.col("__rank").min().over(unit))
            .unique(subset=[unit], keep="first", maintain_order=True)
            .sort("__order")
            .drop("__rank", "__order")
        )
    return frame


def held_out(
    frame: pl.DataFrame, secret: bytes, test_fraction: float, unit: str | None
) -> np.ndarray:
    """Boolean mask: True for rows held out for testing, by a keyed hash of each row's
    identifier (all rows of a person on one side) or, without one, of its content."""
    if unit is not None:
        keys = [json.dumps(v, default=str).encode() for v in frame[unit].to_list()]
    else:
        keys = _row_keys(frame)
    return np.array([_unit(secret, b"split", k) < test_fraction for k in keys], dtype=bool)


@dataclass(frozen=True)
class CatalogLoader:
    """A node's loader: reads its own dataset from the catalog, runs on the node only.

    Picklable (it holds paths and names), so the simulation ships it to each node's worker.
    ``node_state`` is the root of the nodes' state directories; each node's secret
    (``<node_state>/<dataset>/secret.key``) keys its row selection and its train/test split.
    """

    catalog_root: str
    features: tuple[str, ...]
    label: str
    node_state: str
    test_fraction: float = 0.2
    #: The label value of the positive class (the job's ``positive``); see :func:`encode_label`.
    positive: str | None = None
    #: A multi-class label's values (the job's ``classes``); see :func:`encode_label`.
    classes: tuple[str, ...] | None = None

    def frame(self, node_id: str) -> pl.DataFrame:
        """The node's rows, one per person (see :func:`person_rows`)."""
        manifest = load_catalog(self.catalog_root)[node_id]
        return person_rows(manifest, self._secret(node_id))

    def _secret(self, node_id: str) -> bytes:
        return NodeStore(node_state_dir(self.node_state, node_id)).secret()

    def __call__(self, node_id: str) -> NodeData:
        manifest = load_catalog(self.catalog_root)[node_id]
        check_trainable(
            manifest, self.features, self.label, positive=self.positive, classes=self.classes
        )
        secret = self._secret(node_id)
        return self.node_data(manifest, person_rows(manifest, secret), secret)

    def node_data(self, manifest: Manifest, frame: pl.DataFrame, secret: bytes) -> NodeData:
        """Encode ``frame`` (rows of ``manifest``) and split it by the keyed hash."""
        columns = [encode_column(manifest.column(f), frame[f].to_numpy()) for f in self.features]
        X = np.column_stack(columns).astype(np.float32)
        y = encode_label(frame[self.label].to_list(), self.positive, self.label, self.classes)
        test = held_out(frame, secret, self.test_fraction, manifest.privacy_unit.id_column)
        categorical = {
            f: len(manifest.column(f).categories or ())
            for f in self.features
            if manifest.column(f).categories is not None
        }
        return NodeData(X[~test], y[~test], X[test], y[test], self.features, categorical)


@dataclass(frozen=True)
class PartitionLoader:
    """Try federation on a single table: one dataset split into nodes by a column.

    Node ``v`` holds the rows whose ``column`` equals the category ``v`` (compared as text);
    the node ids are the column's *declared* categories (:func:`partition_nodes`, public
    metadata), never values read from the data. The partitions are disjoint, so a record is
    on one node only. For simulations (:func:`federation.inprocess.run_inprocess`,
    ``run_simulation``) and benchmarks: the governed :class:`TrainingService` keeps one node
    per catalog dataset, as the ledger charges per dataset.
    """

    inner: CatalogLoader
    dataset: str
    column: str

    def __call__(self, node_id: str) -> NodeData:
        manifest = load_catalog(self.inner.catalog_root)[self.dataset]
        inner = self.inner
        check_trainable(
            manifest, inner.features, inner.label, positive=inner.positive, classes=inner.classes
        )
        if node_id not in partition_nodes(manifest, self.column):
            raise TrainingError(
                f"{node_id!r} is not a declared category of {self.column!r} in "
                f"{self.dataset!r}; the nodes are {partition_nodes(manifest, self.column)}"
            )
        secret = self.inner._secret(self.dataset)
        frame = person_rows(manifest, secret)
        keep = [v is not None and str(v) == node_id for v in frame[self.column].to_list()]
        return self.inner.node_data(manifest, frame.filter(pl.Series(keep)), secret)


def partition_nodes(manifest: Manifest, column: str) -> tuple[str, ...]:
    """The node ids of :class:`PartitionLoader`: ``column``'s declared categories as text."""
    try:
        spec = manifest.column(column)
    except KeyError:
        raise TrainingError(f"{manifest.name!r} has no column {column!r}") from None
    if spec.categories is None:
        raise TrainingError(
            f"partitioning by {column!r} needs its categories declared in the manifest "
            "(public node names); choose a categorical column"
        )
    return tuple(str(v) for v in spec.categories)


def check_job_on(manifest: Manifest, spec: JobSpec) -> None:
    """Refuse ``spec`` on ``manifest``'s dataset before any decision or spend: its columns and
    label (:func:`check_trainable`) and its delta (below 1/row_bound and at most max_delta).
    Public metadata only, so a refusal reveals nothing about the rows."""
    check_trainable(
        manifest,
        tuple(spec.features),
        spec.label,
        positive=spec.positive,
        classes=spec.classes,
    )
    check_dataset_delta(manifest, spec.target_delta)


def check_trainable(
    manifest: Manifest,
    features: tuple[str, ...],
    label: str,
    *,
    positive: str | None = None,
    classes: tuple[str, ...] | None = None,
) -> None:
    """Refuse a job whose features or label are not attribute columns of the manifest, or whose
    label values, when the manifest lists the label's categories (public), do not fit the job:
    ``classes`` must cover every category (a node refuses a row whose label is not a class),
    ``positive`` must be one of them, and a job with neither needs categories 0 and 1 only.
    Checked before any budget is reserved."""
    for name in (*features, label):
        try:
            column = manifest.column(name)
        except KeyError:
            raise TrainingError(
                f"{manifest.name!r} has no column {name!r}; see its manifest in the catalog"
            ) from None
        if column.role == "identifier":
            raise TrainingError(
                f"column {name!r} of {manifest.name!r} is an identifier; it can never be a "
                "feature or label"
            )
    categories = manifest.column(label).categories
    if categories is None:
        return
    values = {str(v) for v in categories}
    if classes is not None:
        missing = sorted(values - set(classes))
        if missing:
            raise TrainingError(
                f"label {label!r} of {manifest.name!r} has categories {sorted(values)} but the "
                f"job's classes leave out {missing}; list every category in classes"
            )
    elif positive is not None:
        if positive not in values:
            raise TrainingError(
                f"positive {positive!r} is not a category of label {label!r} of "
                f"{manifest.name!r} ({sorted(values)})"
            )
    elif not values <= {"0", "1", "True", "False"}:
        raise TrainingError(
            f"label {label!r} of {manifest.name!r} has categories {sorted(values)}: name the "
            "positive class (positive: ...) for a binary model, or list classes: [...]"
        )


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
        """The model card as JSON data (empty if the job released none)."""
        card = self.result.model_card
        data: dict[str, Any] = json.loads(card.to_json()) if card is not None else {}
        return data


def model_digest(weights: dict[str, Array] | None) -> str:
    """SHA-256 of the weights, by name, in name order (what the release entry records)."""
    digest = hashlib.sha256()
    for name, tensor in sorted((weights or {}).items(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor).tobytes())
    return digest.hexdigest()


class TrainingService:
    """Runs training jobs over a catalog under the policy authority.

    ``node_state`` is the root of the department nodes' own state directories (one per
    dataset: approvals, tallies, secret). In this embedded setting the service writes each
    node's approval there after the authority's decision, acting for the department; it
    defaults to ``<authority state dir>-nodes``, beside (never inside) the hub's state.
    """

    def __init__(self, catalog: Catalog, authority: Authority, node_state: Path | None = None):
        self.catalog = catalog
        self.authority = authority
        state = Path(authority.state_dir)
        self.node_state = Path(node_state) if node_state else state.with_name(state.name + "-nodes")

    def _store(self, dataset: str) -> NodeStore:
        return NodeStore(node_state_dir(self.node_state, dataset))

    def train(
        self,
        firm: str,
        purpose: str,
        spec: JobSpec,
        backend_config: dict[str, Any] | None = None,
    ) -> GovernedModel:
        """Decide, then run the job through :meth:`policies.Authority.use`.

        Raises ``Denied`` if any dataset's decision is a deny (nothing is reserved), the
        sandbox's errors for a job the catalog cannot serve, and the policies' or
        federation's errors of the governed path.
        """
        if not spec.dp:
            raise TrainingError(
                "this job has dp=False: training on person data without DP-SGD is refused; "
                "set dp: true with a target_epsilon"
            )
        for node in spec.nodes:
            # Unknown datasets or columns, and a delta the dataset does not allow (below
            # 1/row_bound and at most max_delta: public metadata, so a refusal reveals nothing
            # about the rows), fail here, before any decision or spend.
            check_job_on(self.catalog[node], spec)
        plan = plan_job(spec)  # once: every node's parameters and every dataset's cost
        decisions = [self._decide(firm, purpose, spec, node, plan) for node in spec.nodes]
        job = _Job(self, spec, plan, backend_config)
        settled = self.authority.use(decisions, job.run, on_failure=job.on_failure)
        result, digest = settled.value
        return GovernedModel(result, digest, settled.release_indexes)

    def _decide(self, firm: str, purpose: str, spec: JobSpec, node: str, plan: JobPlan) -> Decision:
        cost = plan.predicted[node]
        request = Request.parse(
            {
                "firm": firm,
                "dataset": node,
                "purpose": purpose,
                "action": Action.TRAIN,
                "columns": tuple(
                    ColumnRef(name=c, use=ColumnUse.AGGREGATE) for c in (*spec.features, spec.label)
                ),
                "epsilon": cost.epsilon,
                "delta": cost.delta,
                "model": spec.model,
                "plan_digest": spec.config_hash(),
            }
        )
        decision = self.authority.decide(request)
        if not decision.permit:
            raise Denied(decision)
        return decision


class _Job:
    """One training job's ``run`` and ``on_failure`` for :meth:`policies.Authority.use`."""

    def __init__(
        self,
        service: TrainingService,
        spec: JobSpec,
        plan: JobPlan,
        backend_config: dict[str, Any] | None,
    ) -> None:
        self.service, self.spec, self.plan = service, spec, plan
        self.backend_config = backend_config
        self.before: dict[str, Usage] = {}
        self.approvals: dict[str, Approval] = {}

    def run(self, reservations: tuple[Reservation, ...]) -> Outcome[tuple[TrainingResult, str]]:
        """Record each node's tallies and the approved plan on the node, then train."""
        service, spec = self.service, self.spec
        grants = {r.dataset: r.grant_id for r in reservations}
        for r in reservations:
            self.before[r.dataset] = service._store(r.dataset).usage(r.grant_id, r.dataset)
        # The department side records what the authority approved; nodes run nothing else.
        for node, approval in plan_approvals(spec, grants, plan=self.plan).items():
            service._store(node).approve(approval)
            self.approvals[node] = approval
        loader = CatalogLoader(
            str(service.catalog.root),
            tuple(spec.features),
            spec.label,
            str(service.node_state),
            positive=spec.positive,
            classes=spec.classes,
        )
        # The run is checked against what the ledger reserved for each dataset.
        reserved = {r.dataset: PrivacyCost(r.epsilon, r.delta) for r in reservations}
        result = run_simulation(
            spec,
            loader,
            budget=reserved,
            plan=self.plan,
            backend_config=self.backend_config,
            node_state=service.node_state,
            grants=grants,
        )
        if result.status != "completed":
            return Outcome((result, model_digest(None)), None, "aborted")
        digest = model_digest(result.weights)
        card = json.loads(result.model_card.to_json()) if result.model_card is not None else {}
        released = json.dumps(
            {"model_sha256": digest, "model_card": card},
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        ).encode()
        return Outcome((result, digest), released)

    def on_failure(self, reservation: Reservation, reason: str) -> bytes | None:
        """After a job that did not complete: ``None`` (refund) only if the dataset's node
        confirms nothing left it under the grant (tallies unchanged, approval withdrawn);
        otherwise the failure as the record of what was released (it stays charged)."""
        node = reservation.dataset
        if node not in self.before:
            return None  # failed before the node was told of the job: nothing ran there
        store = self.service._store(node)
        after = store.usage(reservation.grant_id, node)
        approval = self.approvals.get(node)
        if after == self.before[node] and (approval is None or store.withdraw(approval)):
            return None
        logger.warning(
            "training job %s failed (%s) after node %s released DP output; its reservation "
            "stays charged",
            self.spec.config_hash()[:16],
            reason,
            node,
        )
        return json.dumps(
            {
                "status": "failed",
                "reason": reason,
                "config_hash": self.spec.config_hash(),
                "node_steps": after.steps - self.before[node].steps,
                "model_sha256": None,
            },
            sort_keys=True,
        ).encode()


def save_model(model: GovernedModel, out: Path) -> Path:
    """Write the released weights (npz) and model card (json) beside each other."""
    out.mkdir(parents=True, exist_ok=True)
    weights: dict[str, Any] = dict(model.result.weights or {})
    np.savez(out / "weights.npz", **weights)
    (out / "model_card.json").write_text(
        json.dumps(model.model_card(), ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    return out
