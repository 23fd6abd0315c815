"""The Flower ``ClientApp`` that runs on a department node.

It answers three kinds of messages from the ``ServerApp``:

* ``query`` (describe): the node's name and its train row count, released once through OpenDP;
* ``train``: load the node's rows through its :class:`~federation.loader.Loader`, run DP-SGD
  from the received global weights, send back only the new weights (the output of the DP-SGD
  mechanism) and data-independent metrics;
  and, when the job releases a training loss (``loss_epsilon > 0``), the round's clipped
  training-loss sum through OpenDP's Laplace mechanism (:func:`dp_loss_sum`);
* ``evaluate``: a DP histogram of the held-out rows by class and predicted score (binary), or
  a DP confusion matrix (K >= 3 classes), from which the model card computes accuracy, AUC
  (binary only), the majority-class baseline and the class balance.

Every message is first checked against the node's own approvals
(:func:`federation.node_authorization.authorize`): the node runs only the plan approved for
the grant and its dataset. It counts every DP-SGD step, row-count release and evaluation per
grant, dataset and plan in that durable store before running it, so no run (and no second run)
goes beyond the approval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import opendp.prelude as opendp
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.dp_count import dp_cell, dp_count
from federation.dpsgd import load_weights, per_example_loss, predict_proba, train_local
from federation.errors import InvalidJobError, MechanismError, NodeDataError
from federation.job import JobSpec
from federation.loader import Loader, NodeData
from federation.node_authorization import (
    NODE_NAME_KEY,
    STATE_DIR_KEY,
    AuthorizedJob,
    authorize,
    node_name,
)
from federation.zoo import build_model

__all__ = [
    "NODE_NAME_KEY",
    "STATE_DIR_KEY",
    "EVAL_BINS",
    "MAX_ROWS_PER_PERSON",
    "authorize",
    "confusion_matrix",
    "dp_cell",
    "dp_loss_sum",
    "loss_clip",
    "loss_measurement",
    "evaluation_histogram",
    "handle_evaluate",
    "handle_query",
    "handle_train",
    "make_client_app",
    "node_name",
    "weights_norm",
]


def _load(loaders: Mapping[str, Loader], name: str, spec: JobSpec) -> NodeData:
    loader = loaders.get(name)
    if loader is None:
        raise NodeDataError(f"node {name!r} has no loader for its dataset; give it one")
    data = loader(name)
    if not isinstance(data, NodeData):
        raise NodeDataError(f"the loader of node {name!r} must return NodeData")
    data.check(spec.features, name, spec.num_classes)
    for feature, card in spec.categorical.items():
        if data.categorical.get(feature) != card:
            raise NodeDataError(
                f"node {name!r} declares cardinality {data.categorical.get(feature)} for "
                f"{feature!r} but the job expects {card}; fix the loader or the job"
            )
    return data


def _released_rows(job: AuthorizedJob, data: NodeData) -> int:
    a = job.approval
    return job.store.release_row_count(
        a.grant_id,
        a.dataset,
        a.plan_digest,
        lambda: dp_count(len(data.y_train), job.spec.count_epsilon),
    )


def _received(message: Message) -> ArrayRecord:
    arrays = message.content.get("arrays")
    if not isinstance(arrays, ArrayRecord):
        raise NodeDataError("the message carries no model weights; resend it")
    return arrays


def _norm(after: Mapping[str, torch.Tensor], before: Mapping[str, torch.Tensor]) -> float:
    squares = [float(((after[k] - v.float()) ** 2).sum()) for k, v in before.items()]
    return float(np.sqrt(sum(squares)))


def handle_query(
    message: Message,
    context: Context,
    loaders: Mapping[str, Loader],
    node_state: str | None = None,
) -> Message:
    """Describe the node: its name and DP train row count (drawn once per approved plan)."""
    job = authorize(message, context, node_state)
    data = _load(loaders, job.name, job.spec)
    content = RecordDict(
        {
            "metrics": MetricRecord({"dp-rows": _released_rows(job, data)}),
            "node": ConfigRecord({NODE_NAME_KEY: job.name}),
        }
    )
    return Message(content=content, reply_to=message)


def handle_train(
    message: Message,
    context: Context,
    loaders: Mapping[str, Loader],
    node_state: str | None = None,
) -> Message:
    """Run the round's DP-SGD steps from the global weights and reply with the new weights."""
    torch.set_num_threads(1)
    job = authorize(message, context, node_state)
    spec, plan = job.spec, job.plan
    data = _load(loaders, job.name, spec)
    k = spec.num_classes
    model = build_model(
        spec.model, spec.features, spec.categorical, spec.model_params, num_classes=k
    )
    start = _received(message).to_torch_state_dict()
    load_weights(model, start)
    # Count the steps before training: a crash mid-training must never free them.
    a = job.approval
    job.store.take_steps(a.grant_id, a.dataset, a.plan_digest, plan.steps_per_round)
    result = train_local(
        model,
        data.X_train,
        data.y_train,
        dp=spec.dp,
        sample_rate=plan.sample_rate,
        steps=plan.steps_per_round,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=spec.max_grad_norm,
        learning_rate=spec.learning_rate,
        proximal_mu=spec.proximal_mu,  # the approved job's, not what the message says
        num_classes=k,
    )
    values: dict[str, int | float | list[int] | list[float]] = {
        "num-examples": max(1, _released_rows(job, data)),
        "steps": result.steps,
        "compute-s": result.compute_s,
        "update-norm": _norm(result.state_dict, start),
    }
    if spec.loss_epsilon > 0:
        # The taken steps above bound these releases: one per round of steps, at most rounds.
        load_weights(model, result.state_dict)
        losses = per_example_loss(model, data.X_train, data.y_train, k)
        values["dp-loss-sum"] = dp_loss_sum(losses, k, spec.loss_epsilon / spec.rounds)
    metrics = MetricRecord(values)
    content = RecordDict(
        {"arrays": ArrayRecord(torch_state_dict=result.state_dict), "metrics": metrics}
    )
    return Message(content=content, reply_to=message)


#: Rows one person may contribute to a node's training rows (the privacy unit: one row per
#: person, as for the DP row count); the loss sum's sensitivity is this times the clip.
MAX_ROWS_PER_PERSON = 1


def loss_clip(num_classes: int) -> float:
    """The public bound each row's training loss is clipped to before summing, in nats: 2.0
    for a binary label (a row predicted at 0.135 for its own class reaches it), ``ln K + 1``
    for K classes (one nat above the loss of a uniform guess). Fixed by the job's classes.

    >>> loss_clip(2)
    2.0
    >>> round(loss_clip(3), 4)
    2.0986
    """
    return 2.0 if num_classes == 2 else math.log(num_classes) + 1.0


def loss_measurement(num_classes: int, epsilon: float) -> opendp.Measurement:
    """OpenDP's Laplace mechanism on one float (the clipped loss sum) whose privacy map at the
    sensitivity ``loss_clip * MAX_ROWS_PER_PERSON`` is at most ``epsilon``."""
    if epsilon <= 0:
        raise InvalidJobError(f"a DP loss needs a positive epsilon, got {epsilon}; raise it")
    sensitivity = loss_clip(num_classes) * MAX_ROWS_PER_PERSON
    scale = sensitivity / epsilon
    for _ in range(8):  # OpenDP rounds its map up; widen the scale by ulps until it fits
        measurement = opendp.m.make_laplace(
            opendp.atom_domain(T=float, nan=False), opendp.absolute_distance(T=float), scale=scale
        )
        if measurement.map(sensitivity) <= epsilon:  # type: ignore[no-untyped-call]
            return measurement
        scale = math.nextafter(scale, math.inf)
    raise MechanismError(
        "the Laplace measurement does not meet the loss epsilon; nothing was released"
    )


def dp_loss_sum(losses: np.ndarray, num_classes: int, epsilon: float) -> float:
    """The sum of per-row losses, each clipped to ``[0, loss_clip(num_classes)]``, released
    with epsilon-DP through :func:`loss_measurement` (fresh OpenDP noise every call).

    >>> isinstance(dp_loss_sum(np.array([0.3, 5.0]), 2, 1.0), float)
    True
    """
    measurement = loss_measurement(num_classes, epsilon)
    clipped = np.clip(
        np.nan_to_num(losses, nan=loss_clip(num_classes)), 0.0, loss_clip(num_classes)
    )
    return float(measurement(float(clipped.sum())))


#: Score bins of the evaluation histogram: [0, 0.1), [0.1, 0.2), ... [0.9, 1]; 0.5 is an edge.
EVAL_BINS = 10


def evaluation_histogram(scores: np.ndarray, y: np.ndarray) -> dict[str, int]:
    """Exact counts of held-out rows per (class, score bin): ``pos-i`` / ``neg-i``.

    Every row falls in exactly one cell, so releasing every cell with an epsilon-DP count is
    epsilon-DP as a whole (adding or removing one row changes one cell by one).

    >>> evaluation_histogram(np.array([0.05, 0.95, 0.55]), np.array([0.0, 1.0, 0.0]))["neg-5"]
    1
    """
    bins = np.minimum((np.clip(scores, 0.0, 1.0) * EVAL_BINS).astype(int), EVAL_BINS - 1)
    positive = y == 1
    out: dict[str, int] = {}
    for i in range(EVAL_BINS):
        out[f"pos-{i}"] = int((positive & (bins == i)).sum())
        out[f"neg-{i}"] = int((~positive & (bins == i)).sum())
    return out


def confusion_matrix(probs: np.ndarray, y: np.ndarray) -> dict[str, int]:
    """Exact counts of held-out rows per (true class t, predicted class p): ``cm-t-p``, for a
    K-class model (``probs`` of shape ``(n, K)``, ``y`` class indices). Every row falls in
    exactly one cell, so releasing every cell with an epsilon-DP count is epsilon-DP in all.

    >>> cm = confusion_matrix(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]), np.array([0, 1]))
    >>> cm["cm-0-0"], cm["cm-1-2"], cm["cm-2-2"]
    (1, 1, 0)
    """
    k = probs.shape[1]
    predicted = probs.argmax(axis=1)
    truth = np.asarray(y).astype(int)
    return {
        f"cm-{t}-{p}": int(((truth == t) & (predicted == p)).sum())
        for t in range(k)
        for p in range(k)
    }


def handle_evaluate(
    message: Message,
    context: Context,
    loaders: Mapping[str, Loader],
    node_state: str | None = None,
) -> Message:
    """Evaluate the received model on the held-out rows, once per approved use.

    The node releases one DP histogram of its held-out rows by true class and predicted-score
    bin (:func:`evaluation_histogram`, every cell through OpenDP's Laplace mechanism,
    :func:`dp_cell`, at ``eval_epsilon``; disjoint cells, so ``eval_epsilon`` in all).
    For K >= 3 classes it releases a confusion matrix instead (:func:`confusion_matrix`, the
    same mechanism per cell, disjoint cells). Accuracy, AUC (binary only), the majority-class
    baseline and the class balance on the model card are computed from those released cells
    only; ``dp-correct``/``dp-total`` are sums of them (post-processing).
    """
    job = authorize(message, context, node_state)
    spec = job.spec
    data = _load(loaders, job.name, spec)
    a = job.approval
    job.store.take_evaluation(a.grant_id, a.dataset, a.plan_digest)
    k = spec.num_classes
    model = build_model(
        spec.model, spec.features, spec.categorical, spec.model_params, num_classes=k
    )
    load_weights(model, _received(message).to_torch_state_dict())
    probs = predict_proba(model, data.X_test)
    if k == 2:
        exact = evaluation_histogram(probs, data.y_test)
        released = {key: dp_cell(count, spec.eval_epsilon) for key, count in exact.items()}
        half = EVAL_BINS // 2
        correct = sum(released[f"pos-{i}"] for i in range(half, EVAL_BINS)) + sum(
            released[f"neg-{i}"] for i in range(half)
        )
    else:
        exact = confusion_matrix(probs, data.y_test)
        released = {key: dp_cell(count, spec.eval_epsilon) for key, count in exact.items()}
        correct = sum(released[f"cm-{t}-{t}"] for t in range(k))
    metrics = MetricRecord(
        {
            "dp-correct": max(0, correct),
            "dp-total": max(0, sum(released.values())),
            **{f"dp-hist-{key}": value for key, value in released.items()},
        }
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=message)


def make_client_app(
    loaders: Mapping[str, Loader], node_state: str | Path | None = None
) -> ClientApp:
    """Build the ClientApp; ``loaders`` maps each node name to that node's loader.

    ``node_state`` is the root under which each node keeps its state directory (its approvals,
    tallies and secret), ``<node_state>/<dataset>``; a deployed SuperNode instead names its
    directory in its node config (``state-dir``). On a real SuperNode the mapping holds just
    the local department's loader.
    """
    table = dict(loaders)
    root = None if node_state is None else str(node_state)
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return handle_query(message, context, table, root)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return handle_train(message, context, table, root)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return handle_evaluate(message, context, table, root)

    return app


def weights_norm(weights: Mapping[str, np.ndarray]) -> float:
    """Euclidean norm of a set of arrays taken together."""
    return float(np.sqrt(sum(float((np.asarray(w) ** 2).sum()) for w in weights.values())))
