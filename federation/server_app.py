"""The Flower ``ServerApp`` that coordinates a job.

Its main loop drives a Flower strategy (``FedAvg``, ``FedProx`` or ``FedAvgM`` from
``flwr.serverapp.strategy``) one round at a time instead of calling ``strategy.start``, so it
can: record which node failed in which round and why; finish a round with the nodes that
answered when at least ``min_nodes`` did; abort cleanly otherwise; and time every round.
FedAvg weights are the nodes' DP row counts, never exact counts.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flwr.app import (  # noqa: E402
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx  # noqa: E402
from flwr.supercore import log  # noqa: E402

from federation.accounting import JobPlan  # noqa: E402
from federation.client_app import NODE_NAME_KEY  # noqa: E402
from federation.client_dp import aggregate, client_noise_multiplier, sample_nodes  # noqa: E402
from federation.errors import NotEnoughNodesError  # noqa: E402
from federation.job import JobSpec  # noqa: E402
from federation.result import NodeFailure, RoundMetrics  # noqa: E402
from federation.zoo import build_model  # noqa: E402

#: How often the server polls for replies. Flower's in-memory Grid defaults to 0.1 s.
PULL_INTERVAL_S = 0.01


@dataclass
class JobOutcome:
    """Filled in by the ServerApp while the job runs; read by the runner afterwards."""

    dp_rows: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    rounds_participated: dict[str, int] = field(default_factory=dict)
    evaluated: dict[str, bool] = field(default_factory=dict)
    dp_correct: dict[str, int] = field(default_factory=dict)
    dp_total: dict[str, int] = field(default_factory=dict)
    rounds: list[RoundMetrics] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    weights: dict[str, np.ndarray] | None = None
    round_weights: list[dict[str, np.ndarray]] = field(default_factory=list)
    abort_reason: str | None = None
    finished: bool = False
    client_rounds: int = 0  # rounds released under client-level DP


def make_strategy(spec: JobSpec) -> FedAvg:
    """The Flower strategy named by the spec; every reachable node trains every round."""
    common = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": spec.min_nodes,
        "min_available_nodes": spec.min_nodes,
    }
    if spec.strategy == "fedprox":
        return FedProx(proximal_mu=spec.proximal_mu, **common)
    if spec.strategy == "fedavgm":
        return FedAvgM(
            server_learning_rate=spec.server_learning_rate,
            server_momentum=spec.server_momentum,
            **common,
        )
    return FedAvg(**common)


def _wait_for_nodes(grid: Grid, expected: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        ids = list(grid.get_node_ids())
        if len(ids) >= expected or time.monotonic() > deadline:
            return ids
        time.sleep(PULL_INTERVAL_S)


def _reason(msg: Message) -> str:
    return msg.error.reason if msg.has_error() else "no reply"


def make_server_app(
    spec: JobSpec,
    plan: JobPlan,
    rows_per_node: dict[str, int] | None,
    outcome: JobOutcome,
    keep_round_weights: bool = False,
    on_round: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    grants: Mapping[str, str] | None = None,
) -> ServerApp:
    """Build the ServerApp for one job; results are written into ``outcome``.

    ``grants`` names, per dataset, the grant the job runs under; each node looks the job up
    among the plans approved for that grant in its own store and refuses anything else.
    """
    app = ServerApp()
    job_config = {
        "job": spec.canonical_json(),
        "rows": json.dumps(rows_per_node or {}),
        "grants": json.dumps(dict(grants or {}), sort_keys=True),
    }
    client_sigma = client_noise_multiplier(spec) if spec.client_dp else 0.0

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if hasattr(grid, "pull_interval"):
            grid.pull_interval = PULL_INTERVAL_S  # in-memory Grid of the simulation engine
        try:
            _run(grid)
        except NotEnoughNodesError as exc:
            outcome.abort_reason = str(exc)
        finally:
            outcome.finished = True

    def fail(node: str, stage: str, reason: str) -> None:
        outcome.failures.append(NodeFailure(node=node, stage=stage, reason=reason))
        log(INFO, "node %s failed at %s: %s", node, stage, reason)

    def exchange(
        grid: Grid, messages: list[Message], names: dict[int, str], stage: str
    ) -> tuple[list[Message], list[str]]:
        sent = {m.metadata.dst_node_id for m in messages}
        replies = list(grid.send_and_receive(messages, timeout=spec.round_timeout_s))
        ok, failed = [], []
        for reply in replies:
            src = reply.metadata.src_node_id
            sent.discard(src)
            if reply.has_error():
                failed.append(names.get(src, f"node-id {src}"))
                fail(failed[-1], stage, _reason(reply))
            else:
                ok.append(reply)
        for missing in sent:
            failed.append(names.get(missing, f"node-id {missing}"))
            fail(failed[-1], stage, f"no reply within {spec.round_timeout_s} s")
        return ok, failed

    def _run(grid: Grid) -> None:
        node_ids = _wait_for_nodes(grid, len(spec.nodes), spec.round_timeout_s)
        names: dict[int, str] = {}
        # Describe: learn each node's name and DP row count.
        query = [
            Message(RecordDict({"config": ConfigRecord(job_config)}), nid, MessageType.QUERY)
            for nid in node_ids
        ]
        ok, _ = exchange(grid, query, names, "describe")
        for reply in ok:
            name = str(reply.content["node"][NODE_NAME_KEY])
            names[reply.metadata.src_node_id] = name
            outcome.dp_rows[name] = int(reply.content["metrics"]["dp-rows"])
        _require(len(ok), "describe")

        strategy = make_strategy(spec)
        model = build_model(
            spec.model, spec.features, spec.categorical, spec.model_params, seed=spec.seed
        )
        arrays = ArrayRecord(torch_state_dict=model.state_dict())
        for rnd in range(1, spec.rounds + 1):
            start = time.perf_counter()
            if spec.client_dp:
                # Client-level DP: Poisson-sample the nodes, clip and noise on the server.
                config = ConfigRecord({**job_config, "server-round": rnd})
                messages = [
                    Message(
                        RecordDict({"arrays": arrays, "config": config}), nid, MessageType.TRAIN
                    )
                    for nid in sample_nodes(list(names), spec.client_sample_rate)
                ]
            else:
                messages = list(
                    strategy.configure_train(rnd, arrays, ConfigRecord(dict(job_config)), grid)
                )
            ok, failed = (
                exchange(grid, messages, names, f"train round {rnd}") if messages else ([], [])
            )
            if spec.client_dp:
                new_arrays = _client_dp_round(arrays, ok)
                outcome.client_rounds += 1
            else:
                _require(len(ok), f"train round {rnd}")
                new_arrays, _ = strategy.aggregate_train(rnd, ok)
            wall = time.perf_counter() - start
            answered = []
            compute, norms = [], []
            for reply in ok:
                name = names[reply.metadata.src_node_id]
                metrics: MetricRecord = reply.content["metrics"]  # type: ignore[assignment]
                answered.append(name)
                outcome.steps[name] = outcome.steps.get(name, 0) + int(metrics["steps"])
                outcome.rounds_participated[name] = outcome.rounds_participated.get(name, 0) + 1
                compute.append(float(metrics["compute-s"]))
                norms.append(float(metrics["update-norm"]))
            for name in failed:
                # A failed node may have taken its steps before failing: charge them.
                node = name if name in plan.nodes else None
                if node is not None:
                    outcome.steps[node] = (
                        outcome.steps.get(node, 0) + plan.nodes[node].steps_per_round
                    )
            if new_arrays is not None:
                arrays = new_arrays
            outcome.rounds.append(
                RoundMetrics(
                    round=rnd,
                    nodes=tuple(sorted(answered)),
                    failed=tuple(sorted(failed)),
                    wall_s=wall,
                    max_compute_s=max(compute, default=0.0),
                    sum_compute_s=sum(compute),
                    overhead_s=wall - max(compute, default=0.0),
                    mean_update_norm=float(np.mean(norms)) if norms else 0.0,
                )
            )
            current = {k: v.numpy() for k, v in arrays.to_torch_state_dict().items()}
            if keep_round_weights:
                outcome.round_weights.append(current)
            if on_round is not None:
                on_round(rnd, current)
        outcome.weights = {k: v.numpy() for k, v in arrays.to_torch_state_dict().items()}

        # Final held-out evaluation, released as DP counts.
        evaluate = [
            Message(
                RecordDict({"arrays": arrays, "config": ConfigRecord(job_config)}),
                nid,
                MessageType.EVALUATE,
            )
            for nid in names
        ]
        for name in names.values():
            # Charged once asked: a node may compute its counts and fail before replying.
            outcome.evaluated[name] = True
        ok, _ = exchange(grid, evaluate, names, "evaluate")
        for reply in ok:
            name = names[reply.metadata.src_node_id]
            outcome.dp_correct[name] = int(reply.content["metrics"]["dp-correct"])
            outcome.dp_total[name] = int(reply.content["metrics"]["dp-total"])

    def _client_dp_round(arrays: ArrayRecord, replies: list[Message]) -> ArrayRecord:
        current = {k: v.numpy() for k, v in arrays.to_torch_state_dict().items()}
        received = [
            {k: v.numpy() for k, v in r.content["arrays"].to_torch_state_dict().items()}  # type: ignore[union-attr]
            for r in replies
        ]
        new = aggregate(
            current,
            received,
            clipping_norm=spec.client_clipping_norm,
            noise_multiplier=client_sigma,
            expected_nodes=spec.client_sample_rate * len(spec.nodes),
        )
        return ArrayRecord(torch_state_dict={k: torch.as_tensor(v) for k, v in new.items()})

    def _require(answered: int, stage: str) -> None:
        if answered < spec.min_nodes:
            raise NotEnoughNodesError(
                f"only {answered} node(s) answered at {stage}, fewer than min_nodes="
                f"{spec.min_nodes}; the job was stopped. Check the failed nodes and resubmit."
            )

    return app


def failed_names(failures: Iterable[NodeFailure]) -> list[str]:
    """Distinct names of nodes that failed at any stage, in order of first failure."""
    return list(dict.fromkeys(f.node for f in failures))
