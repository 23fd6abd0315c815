"""The Flower ``ClientApp`` that runs on a department node.

It answers three kinds of messages from the ``ServerApp``:

* ``query`` (describe): the node's name and its train row count, released once through OpenDP;
* ``train``: load the node's rows through its :class:`~federation.loader.Loader`, run DP-SGD
  from the received global weights, send back only the new weights (the output of the DP-SGD
  mechanism) and data-independent metrics;
* ``evaluate``: held-out accuracy of the final model as two DP counts (correct, total).

The node does not trust the server. Before it answers any of these messages it checks the job
against its own :class:`~federation.node_store.NodeStore`: the job's configuration hash must be
the plan digest approved for the grant and this dataset, the DP-SGD parameters it recomputes from
the job must be the approved ones, and a non-private job (``dp=False``) is refused on person
data. It counts every DP-SGD step, row-count release and evaluation per grant, dataset and plan
in that durable store before running it, so no run (and no second run) goes beyond the approval.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from federation.accounting import JobPlan, plan_job  # noqa: E402
from federation.dp_count import dp_count  # noqa: E402
from federation.dpsgd import load_weights, predict_proba, train_local  # noqa: E402
from federation.errors import InvalidJobError, NodeApprovalError, NodeDataError  # noqa: E402
from federation.job import JobSpec  # noqa: E402
from federation.loader import Loader, NodeData  # noqa: E402
from federation.node_store import Approval, NodeStore, node_state_dir  # noqa: E402
from federation.zoo import build_model  # noqa: E402

NODE_NAME_KEY = "node-name"
#: Node config key (deployment) naming the node's state directory; in simulation the
#: directory is ``<node_state root>/<dataset>``.
STATE_DIR_KEY = "state-dir"


@lru_cache(maxsize=16)
def _job(job_json: str, rows_json: str) -> tuple[JobSpec, JobPlan]:
    spec = JobSpec.parse(job_json)
    try:
        rows = json.loads(rows_json) or None
    except (ValueError, RecursionError):
        raise InvalidJobError("the message's row counts are not JSON") from None
    if rows is not None and not (
        isinstance(rows, dict) and all(isinstance(v, int) for v in rows.values())
    ):
        raise InvalidJobError("the message's row counts must map datasets to integers")
    return spec, plan_job(spec, rows)


def node_name(context: Context, spec: JobSpec) -> str:
    """This node's dataset id: ``node-name`` from the node config (deployment), or the
    simulation partition id mapped onto ``spec.nodes``."""
    if NODE_NAME_KEY in context.node_config:
        return str(context.node_config[NODE_NAME_KEY])
    return spec.nodes[int(context.node_config["partition-id"])]


def _store(context: Context, node_state: str | None, name: str) -> NodeStore:
    if STATE_DIR_KEY in context.node_config:
        return NodeStore(str(context.node_config[STATE_DIR_KEY]))
    if node_state is None:
        raise NodeApprovalError(
            f"node {name!r} has no state directory holding its approvals; it runs nothing"
        )
    return NodeStore(node_state_dir(node_state, name))


def _grant(config: ConfigRecord, name: str) -> str:
    try:
        grants = json.loads(str(config.get("grants", "{}")))
    except (ValueError, RecursionError):
        grants = None
    grant = grants.get(name) if isinstance(grants, dict) else None
    if not isinstance(grant, str) or not grant:
        raise NodeApprovalError(
            f"the job sent to node {name!r} names no grant for it; the node runs only plans "
            "approved under a grant"
        )
    return grant


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True)
class _Authorized:
    spec: JobSpec
    plan: JobPlan
    config: ConfigRecord
    name: str
    store: NodeStore
    approval: Approval


def authorize(message: Message, context: Context, node_state: str | None) -> _Authorized:
    """Check a message's job against the node's own approvals; raise
    :class:`NodeApprovalError` unless it is exactly an approved plan."""
    config: ConfigRecord = message.content["config"]  # type: ignore[assignment]
    spec, plan = _job(str(config["job"]), str(config.get("rows", "{}")))
    name = node_name(context, spec)
    store = _store(context, node_state, name)
    approval = store.approval(_grant(config, name), name, spec.config_hash())
    if not spec.dp and approval.person_data:
        raise NodeApprovalError(
            f"node {name!r} refuses a non-private job (dp=False): its rows are person data"
        )
    node_plan = plan.nodes[name]
    if not (
        _same(node_plan.sample_rate, approval.sample_rate)
        and _same(node_plan.noise_multiplier, approval.noise_multiplier)
        and plan.total_steps(name) <= approval.max_steps
    ):
        raise NodeApprovalError(
            f"node {name!r} refuses the job: its sampling rate, noise or steps differ from the "
            "plan approved under the grant"
        )
    return _Authorized(spec, plan, config, name, store, approval)


def _load(loader: Loader, name: str, spec: JobSpec) -> NodeData:
    data = loader(name)
    if not isinstance(data, NodeData):
        raise NodeDataError(f"the loader of node {name!r} must return NodeData")
    data.check(spec.features, name)
    for feature, card in spec.categorical.items():
        if data.categorical.get(feature) != card:
            raise NodeDataError(
                f"node {name!r} declares cardinality {data.categorical.get(feature)} for "
                f"{feature!r} but the job expects {card}"
            )
    return data


def _released_rows(job: _Authorized, data: NodeData) -> int:
    a = job.approval
    return job.store.release_row_count(
        a.grant_id,
        a.dataset,
        a.plan_digest,
        lambda: dp_count(len(data.y_train), job.spec.count_epsilon),
    )


def handle_query(
    message: Message,
    context: Context,
    loaders: Mapping[str, Loader],
    node_state: str | None = None,
) -> Message:
    """Describe the node: its name and DP train row count (drawn once per approved plan)."""
    job = authorize(message, context, node_state)
    name = job.name
    data = _load(loaders[name], name, job.spec)
    rows = _released_rows(job, data)
    content = RecordDict(
        {
            "metrics": MetricRecord({"dp-rows": rows}),
            "node": ConfigRecord({NODE_NAME_KEY: name}),
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
    spec, name = job.spec, job.name
    node_plan = job.plan.nodes[name]
    data = _load(loaders[name], name, spec)
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params)
    global_arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
    load_weights(model, global_arrays.to_torch_state_dict())
    # Count the steps before training: a crash mid-training must never free them.
    a = job.approval
    job.store.take_steps(a.grant_id, a.dataset, a.plan_digest, node_plan.steps_per_round)
    result = train_local(
        model,
        data.X_train,
        data.y_train,
        dp=spec.dp,
        sample_rate=node_plan.sample_rate,
        steps=node_plan.steps_per_round,
        noise_multiplier=node_plan.noise_multiplier,
        max_grad_norm=spec.max_grad_norm,
        learning_rate=spec.learning_rate,
        proximal_mu=spec.proximal_mu,  # the approved job's, not what the message says
    )
    update_norm = float(
        torch.sqrt(
            sum(
                ((result.state_dict[k] - v.float()) ** 2).sum()
                for k, v in global_arrays.to_torch_state_dict().items()
            )
        )
    )
    metrics = MetricRecord(
        {
            "num-examples": max(1, _released_rows(job, data)),
            "steps": result.steps,
            "compute-s": result.compute_s,
            "update-norm": update_norm,
        }
    )
    content = RecordDict(
        {"arrays": ArrayRecord(torch_state_dict=result.state_dict), "metrics": metrics}
    )
    return Message(content=content, reply_to=message)


def handle_evaluate(
    message: Message,
    context: Context,
    loaders: Mapping[str, Loader],
    node_state: str | None = None,
) -> Message:
    """Held-out accuracy of the received model as DP counts, once per approved use."""
    job = authorize(message, context, node_state)
    spec, name = job.spec, job.name
    data = _load(loaders[name], name, spec)
    a = job.approval
    job.store.take_evaluation(a.grant_id, a.dataset, a.plan_digest)
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params)
    arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
    load_weights(model, arrays.to_torch_state_dict())
    correct = int(((predict_proba(model, data.X_test) >= 0.5) == (data.y_test == 1)).sum())
    half = spec.eval_epsilon / 2
    metrics = MetricRecord(
        {
            "dp-correct": dp_count(correct, half),
            "dp-total": dp_count(len(data.y_test), half),
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
