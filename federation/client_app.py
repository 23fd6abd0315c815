"""The Flower ``ClientApp`` that runs on a department node.

It answers three kinds of messages from the ``ServerApp``:

* ``query`` (describe): the node's name and its train row count, released once through OpenDP;
* ``train``: load the node's rows through its :class:`~federation.loader.Loader`, run DP-SGD
  from the received global weights, send back only the new weights (the output of the DP-SGD
  mechanism) and data-independent metrics;
* ``evaluate``: held-out accuracy of the final model as two DP counts (correct, total).

The node does not trust the server: it recomputes the job's DP plan from the job spec itself and
keeps its own tally of steps in its ``Context``, refusing to train beyond what was reserved.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from functools import lru_cache

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402

from federation.accounting import JobPlan, plan_job  # noqa: E402
from federation.dp_count import dp_count  # noqa: E402
from federation.dpsgd import load_weights, predict_proba, train_local  # noqa: E402
from federation.errors import NodeBudgetRefusedError, NodeDataError  # noqa: E402
from federation.job import JobSpec  # noqa: E402
from federation.loader import Loader, NodeData  # noqa: E402
from federation.zoo import build_model  # noqa: E402

STATE_KEY = "federation"
NODE_NAME_KEY = "node-name"


@lru_cache(maxsize=16)
def _job(job_json: str, rows_json: str) -> tuple[JobSpec, JobPlan]:
    spec = JobSpec.model_validate_json(job_json)
    rows = json.loads(rows_json) or None
    return spec, plan_job(spec, rows)


def node_name(context: Context, spec: JobSpec) -> str:
    """This node's dataset id: ``node-name`` from the node config (deployment), or the
    simulation partition id mapped onto ``spec.nodes``."""
    if NODE_NAME_KEY in context.node_config:
        return str(context.node_config[NODE_NAME_KEY])
    return spec.nodes[int(context.node_config["partition-id"])]


def _state(context: Context, config_hash: str) -> ConfigRecord:
    key = f"{STATE_KEY}-{config_hash[:16]}"
    if key not in context.state:
        context.state[key] = ConfigRecord({"steps": 0, "dp-rows": -1, "evaluated": False})
    return context.state[key]  # type: ignore[return-value]


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


def _released_rows(state: ConfigRecord, data: NodeData, spec: JobSpec) -> int:
    if int(state["dp-rows"]) < 0:  # type: ignore[arg-type]
        state["dp-rows"] = dp_count(len(data.y_train), spec.count_epsilon)
    return int(state["dp-rows"])  # type: ignore[arg-type]


def _job_from(message: Message) -> tuple[JobSpec, JobPlan, ConfigRecord]:
    config = message.content["config"]
    spec, plan = _job(str(config["job"]), str(config["rows"]))
    return spec, plan, config  # type: ignore[return-value]


def handle_query(message: Message, context: Context, loaders: Mapping[str, Loader]) -> Message:
    """Describe the node: its name and DP train row count (released at most once per job)."""
    spec, _, _ = _job_from(message)
    name = node_name(context, spec)
    data = _load(loaders[name], name, spec)
    state = _state(context, spec.config_hash())
    rows = _released_rows(state, data, spec)
    content = RecordDict(
        {
            "metrics": MetricRecord({"dp-rows": rows}),
            "node": ConfigRecord({NODE_NAME_KEY: name}),
        }
    )
    return Message(content=content, reply_to=message)


def handle_train(message: Message, context: Context, loaders: Mapping[str, Loader]) -> Message:
    """Run the round's DP-SGD steps from the global weights and reply with the new weights."""
    torch.set_num_threads(1)
    spec, plan, config = _job_from(message)
    name = node_name(context, spec)
    node_plan = plan.nodes[name]
    state = _state(context, spec.config_hash())
    taken = int(state["steps"])  # type: ignore[arg-type]
    if taken + node_plan.steps_per_round > plan.total_steps(name):
        raise NodeBudgetRefusedError(
            f"node {name!r} has taken {taken} of its {plan.total_steps(name)} reserved steps "
            f"and refuses {node_plan.steps_per_round} more; submit a new job"
        )
    data = _load(loaders[name], name, spec)
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params)
    global_arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
    load_weights(model, global_arrays.to_torch_state_dict())
    mu = float(config.get("proximal-mu", 0.0))  # type: ignore[arg-type]
    server_round = int(config["server-round"])  # type: ignore[arg-type]
    # Charge the steps before training: a crash mid-training must never free them.
    state["steps"] = taken + node_plan.steps_per_round
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
        proximal_mu=mu,
        seed=zlib.crc32(f"{spec.seed}/{name}/{server_round}".encode()),
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
            "num-examples": max(1, _released_rows(state, data, spec)),
            "steps": result.steps,
            "compute-s": result.compute_s,
            "update-norm": update_norm,
        }
    )
    content = RecordDict(
        {"arrays": ArrayRecord(torch_state_dict=result.state_dict), "metrics": metrics}
    )
    return Message(content=content, reply_to=message)


def handle_evaluate(message: Message, context: Context, loaders: Mapping[str, Loader]) -> Message:
    """Held-out accuracy of the received model as DP counts, released at most once per job."""
    spec, _, _ = _job_from(message)
    name = node_name(context, spec)
    state = _state(context, spec.config_hash())
    if bool(state["evaluated"]):
        raise NodeBudgetRefusedError(
            f"node {name!r} already released its held-out evaluation for this job"
        )
    data = _load(loaders[name], name, spec)
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params)
    arrays: ArrayRecord = message.content["arrays"]  # type: ignore[assignment]
    load_weights(model, arrays.to_torch_state_dict())
    correct = int(((predict_proba(model, data.X_test) >= 0.5) == (data.y_test == 1)).sum())
    state["evaluated"] = True
    half = spec.eval_epsilon / 2
    metrics = MetricRecord(
        {
            "dp-correct": dp_count(correct, half),
            "dp-total": dp_count(len(data.y_test), half),
        }
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=message)


def make_client_app(loaders: Mapping[str, Loader]) -> ClientApp:
    """Build the ClientApp; ``loaders`` maps each node name to that node's loader.

    On a real SuperNode the mapping holds just the local department's loader.
    """
    table = dict(loaders)
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return handle_query(message, context, table)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return handle_train(message, context, table)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return handle_evaluate(message, context, table)

    return app


def weights_norm(weights: Mapping[str, np.ndarray]) -> float:
    """Euclidean norm of a set of arrays taken together."""
    return float(np.sqrt(sum(float((np.asarray(w) ** 2).sum()) for w in weights.values())))
