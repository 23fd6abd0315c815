"""The Flower ``ServerApp`` that coordinates a job: a :class:`JobServer` and its steps.

:meth:`JobServer.run` drives a Flower strategy (``FedAvg``, ``FedProx`` or ``FedAvgM`` from
``flwr.serverapp.strategy``) one round at a time instead of calling ``strategy.start``, so it
can record which node failed in which round and why; finish a round with the nodes that
answered when at least ``min_nodes`` did; abort cleanly otherwise; and time every round.
FedAvg weights are the nodes' DP row counts, never exact counts. The steps, in order:

1. :meth:`~JobServer.describe`: learn each node's name and DP row count;
2. :meth:`~JobServer.train_round`, ``rounds`` times: send the global weights, tally the steps
   the nodes took (charged even if the round then stops the job), aggregate the replies (or,
   under client-level DP, clip and noise them), record the round;
3. :meth:`~JobServer.evaluate`: the held-out accuracy of the final model, as DP counts.

Everything is written into a :class:`~federation.outcome.JobOutcome`; the runner turns it into
the result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from logging import INFO

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    Context,
    Message,
    MessageType,
    RecordDict,
)
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx
from flwr.supercore import log

from federation.accounting import JobPlan
from federation.client_dp import aggregate, sample_nodes
from federation.errors import FederationError, NodeDataError, NotEnoughNodesError
from federation.job import JobSpec
from federation.node_authorization import NODE_NAME_KEY
from federation.outcome import JobOutcome, Weights, epsilon_so_far
from federation.result import NodeFailure, RoundMetrics
from federation.zoo import build_model

__all__ = ["JobOutcome", "JobServer", "failed_names", "make_server_app", "make_strategy"]

#: How often the server polls for replies. Flower's in-memory Grid defaults to 0.1 s.
PULL_INTERVAL_S = 0.01

OnRound = Callable[[int, Weights], None]


def make_strategy(spec: JobSpec) -> FedAvg:
    """The Flower strategy named by the spec; every reachable node trains every round."""
    n = spec.min_nodes
    if spec.strategy == "fedprox":
        return FedProx(
            fraction_evaluate=0.0,
            min_train_nodes=n,
            min_available_nodes=n,
            proximal_mu=spec.proximal_mu,
        )
    if spec.strategy == "fedavgm":
        return FedAvgM(
            fraction_evaluate=0.0,
            min_train_nodes=n,
            min_available_nodes=n,
            server_learning_rate=spec.server_learning_rate,
            server_momentum=spec.server_momentum,
        )
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)


def _weights(arrays: ArrayRecord) -> Weights:
    return {k: v.numpy() for k, v in arrays.to_torch_state_dict().items()}


def _metric(reply: Message, key: str) -> float:
    value = reply.content["metrics"][key]
    if not isinstance(value, int | float):
        raise NodeDataError(f"a node replied with a malformed {key!r}; check its software")
    return float(value)


def _reason(msg: Message) -> str:
    return str(msg.error.reason) if msg.has_error() else "no reply"


class JobServer:
    """The server side of one job. Results are written into ``outcome``.

    ``grants`` names, per dataset, the grant the job runs under; each node looks the job up
    among the plans approved for that grant in its own store and refuses anything else.
    """

    def __init__(
        self,
        spec: JobSpec,
        plan: JobPlan,
        outcome: JobOutcome,
        *,
        grants: Mapping[str, str] | None = None,
        keep_round_weights: bool = False,
        on_round: OnRound | None = None,
    ) -> None:
        self.spec, self.plan, self.outcome = spec, plan, outcome
        self.keep_round_weights, self.on_round = keep_round_weights, on_round
        self.config: dict[str, ConfigRecordValues] = {
            "job": spec.canonical_json(),
            "rows": json.dumps(dict(plan.rows_per_node or {})),
            "grants": json.dumps(dict(grants or {}), sort_keys=True),
        }
        self.names: dict[int, str] = {}  # Flower node id -> dataset

    def main(self, grid: Grid, context: Context) -> None:
        """The ServerApp's main: run the job; a federation error aborts it cleanly."""
        if hasattr(grid, "pull_interval"):
            grid.pull_interval = PULL_INTERVAL_S  # in-memory Grid of the simulation engine
        try:
            self.run(grid)
        except FederationError as exc:
            self.outcome.abort_reason = str(exc)
        finally:
            self.outcome.finished = True

    def run(self, grid: Grid) -> None:
        """Describe the nodes, train every round, evaluate the final model."""
        self.describe(grid)
        spec = self.spec
        model = build_model(
            spec.model,
            spec.features,
            spec.categorical,
            spec.model_params,
            seed=spec.seed,
            num_classes=spec.num_classes,
        )
        arrays = ArrayRecord(torch_state_dict=model.state_dict())
        strategy = make_strategy(spec)
        for rnd in range(1, spec.rounds + 1):
            arrays = self.train_round(grid, strategy, rnd, arrays)
        self.outcome.weights = _weights(arrays)
        self.evaluate(grid, arrays)

    # --- the steps ---------------------------------------------------------------------------

    def describe(self, grid: Grid) -> None:
        """Learn each node's name and DP row count."""
        node_ids = self.wait_for_nodes(grid)
        query = [self.message(nid, MessageType.QUERY) for nid in node_ids]
        ok, _ = self.exchange(grid, query, "describe")
        for reply in ok:
            name = str(reply.content["node"][NODE_NAME_KEY])
            self.names[reply.metadata.src_node_id] = name
            self.outcome.dp_rows[name] = int(_metric(reply, "dp-rows"))
        self.require(len(ok), "describe")

    def train_round(
        self, grid: Grid, strategy: FedAvg, rnd: int, arrays: ArrayRecord
    ) -> ArrayRecord:
        """One round: send, aggregate, record; returns the new global weights."""
        start = time.perf_counter()
        config = ConfigRecord({**self.config, "server-round": rnd})
        if self.spec.client_dp:
            # Client-level DP: Poisson-sample the nodes, clip and noise on the server.
            sampled = sample_nodes(list(self.names), self.spec.client_sample_rate)
            messages = [self.message(nid, MessageType.TRAIN, arrays, config) for nid in sampled]
        else:
            messages = list(strategy.configure_train(rnd, arrays, config, grid))
        ok, failed = self.exchange(grid, messages, f"train round {rnd}")
        self.tally_steps(ok, failed)  # before anything can stop the job: the steps were taken
        if self.spec.client_dp:
            new: ArrayRecord | None = self.client_dp_aggregate(arrays, ok)
            self.outcome.client_rounds += 1
        else:
            self.require(len(ok), f"train round {rnd}")
            new, _ = strategy.aggregate_train(rnd, ok)
        arrays = new if new is not None else arrays
        self.record_round(rnd, ok, failed, time.perf_counter() - start, _weights(arrays))
        return arrays

    def client_dp_aggregate(self, arrays: ArrayRecord, replies: list[Message]) -> ArrayRecord:
        """DP-FedAvg: the clipped, noised mean update (see :mod:`federation.client_dp`)."""
        received = []
        for reply in replies:
            sent = reply.content.get("arrays")
            if isinstance(sent, ArrayRecord):
                received.append(_weights(sent))
        sigma = self.plan.client_noise_multiplier
        if sigma is None:
            raise NotEnoughNodesError("the job plan has no client-level noise; plan the job again")
        new = aggregate(
            _weights(arrays),
            received,
            clipping_norm=self.spec.client_clipping_norm,
            noise_multiplier=sigma,
            expected_nodes=self.spec.client_sample_rate * len(self.spec.nodes),
        )
        return ArrayRecord(torch_state_dict={k: torch.as_tensor(v) for k, v in new.items()})

    def tally_steps(self, ok: list[Message], failed: list[str]) -> None:
        """Add each node's reported steps; a failed node is charged its round's steps. Every
        node asked to train is charged the round's loss release, answered or not."""
        out = self.outcome
        for reply in ok:
            name = self.names[reply.metadata.src_node_id]
            out.steps[name] = out.steps.get(name, 0) + int(_metric(reply, "steps"))
            out.rounds_participated[name] = out.rounds_participated.get(name, 0) + 1
            out.loss_rounds[name] = out.loss_rounds.get(name, 0) + 1
        for name in failed:
            # A failed node may have taken its steps (and released its loss) before failing.
            if name in self.plan.nodes:
                steps = self.plan.nodes[name].steps_per_round
                out.steps[name] = out.steps.get(name, 0) + steps
                out.loss_rounds[name] = out.loss_rounds.get(name, 0) + 1

    def record_round(
        self, rnd: int, ok: list[Message], failed: list[str], wall: float, current: Weights
    ) -> None:
        """Keep the round's metrics (and weights, when asked); tell ``on_round``."""
        compute = [_metric(reply, "compute-s") for reply in ok]
        norms = [_metric(reply, "update-norm") for reply in ok]
        slowest = max(compute, default=0.0)
        self.outcome.rounds.append(
            RoundMetrics(
                round=rnd,
                nodes=tuple(sorted(self.names[r.metadata.src_node_id] for r in ok)),
                failed=tuple(sorted(failed)),
                wall_s=wall,
                max_compute_s=slowest,
                sum_compute_s=sum(compute),
                overhead_s=wall - slowest,
                mean_update_norm=float(np.mean(norms)) if norms else 0.0,
                dp_loss=self.round_loss(ok),
                epsilon_spent=epsilon_so_far(self.spec, self.plan, self.outcome),
                rounds=self.spec.rounds,
            )
        )
        if self.keep_round_weights:
            self.outcome.round_weights.append(current)
        if self.on_round is not None:
            self.on_round(rnd, current)

    def round_loss(self, ok: list[Message]) -> float | None:
        """The round's mean training loss: the replies' DP loss sums over those nodes' DP row
        counts (released at describe); None when no node released a loss."""
        sums, rows = 0.0, 0
        for reply in ok:
            if "dp-loss-sum" not in reply.content["metrics"]:
                continue
            sums += _metric(reply, "dp-loss-sum")
            rows += self.outcome.dp_rows.get(self.names[reply.metadata.src_node_id], 0)
        if self.spec.loss_epsilon == 0 or not rows:
            return None
        return sums / rows

    def evaluate(self, grid: Grid, arrays: ArrayRecord) -> None:
        """Final held-out evaluation: each node's DP histogram by class and score bin (or DP
        confusion matrix for K >= 3 classes)."""
        messages = [self.message(nid, MessageType.EVALUATE, arrays) for nid in self.names]
        for name in self.names.values():
            # Charged once asked: a node may compute its counts and fail before replying.
            self.outcome.evaluated[name] = True
        ok, _ = self.exchange(grid, messages, "evaluate")
        for reply in ok:
            name = self.names[reply.metadata.src_node_id]
            self.outcome.dp_correct[name] = int(_metric(reply, "dp-correct"))
            self.outcome.dp_total[name] = int(_metric(reply, "dp-total"))
            metrics = reply.content["metrics"]
            self.outcome.dp_histograms[name] = {
                key.removeprefix("dp-hist-"): int(_metric(reply, key))
                for key in metrics
                if key.startswith("dp-hist-")
            }

    # --- messaging ---------------------------------------------------------------------------

    def message(
        self,
        node_id: int,
        kind: str,
        arrays: ArrayRecord | None = None,
        config: ConfigRecord | None = None,
    ) -> Message:
        """A message to one node carrying the job (and the global weights, if given)."""
        content = RecordDict({"config": config or ConfigRecord(dict(self.config))})
        if arrays is not None:
            content["arrays"] = arrays
        return Message(content, node_id, kind)

    def wait_for_nodes(self, grid: Grid) -> list[int]:
        """The nodes connected once all of the job's have, or when the round timeout passes."""
        deadline = time.monotonic() + self.spec.round_timeout_s
        while True:
            ids = list(grid.get_node_ids())
            if len(ids) >= len(self.spec.nodes) or time.monotonic() > deadline:
                return ids
            time.sleep(PULL_INTERVAL_S)

    def exchange(
        self, grid: Grid, messages: list[Message], stage: str
    ) -> tuple[list[Message], list[str]]:
        """Send ``messages`` and wait; returns the good replies and the names that failed."""
        if not messages:
            return [], []
        timeout = self.spec.round_timeout_s
        sent = {m.metadata.dst_node_id for m in messages}
        ok, failed = [], []
        for reply in grid.send_and_receive(messages, timeout=timeout):
            src = reply.metadata.src_node_id
            sent.discard(src)
            if reply.has_error():
                failed.append(self.fail(src, stage, _reason(reply)))
            else:
                ok.append(reply)
        for missing in sent:
            failed.append(self.fail(missing, stage, f"no reply within {timeout} s"))
        return ok, failed

    def fail(self, node_id: int, stage: str, reason: str) -> str:
        """Record that a node failed at ``stage``; returns its name."""
        name = self.names.get(node_id, f"node-id {node_id}")
        self.outcome.failures.append(NodeFailure(node=name, stage=stage, reason=reason))
        log(INFO, "node %s failed at %s: %s", name, stage, reason)
        return name

    def require(self, answered: int, stage: str) -> None:
        """Stop the job if fewer than ``min_nodes`` answered."""
        if answered < self.spec.min_nodes:
            raise NotEnoughNodesError(
                f"only {answered} node(s) answered at {stage}, fewer than min_nodes="
                f"{self.spec.min_nodes}; the job was stopped. Check the failed nodes and resubmit."
            )


def make_server_app(
    spec: JobSpec,
    plan: JobPlan,
    rows_per_node: dict[str, int] | None,
    outcome: JobOutcome,
    keep_round_weights: bool = False,
    on_round: OnRound | None = None,
    grants: Mapping[str, str] | None = None,
) -> ServerApp:
    """The ServerApp of one job: a :class:`JobServer` as its main; results go to ``outcome``.

    ``rows_per_node`` is accepted for compatibility; the plan's public row counts are sent.
    """
    del rows_per_node  # the plan carries the row counts it was made from
    server = JobServer(
        spec,
        plan,
        outcome,
        grants=grants,
        keep_round_weights=keep_round_weights,
        on_round=on_round,
    )
    app = ServerApp()
    app.main()(server.main)
    return app


def failed_names(failures: Iterable[NodeFailure]) -> list[str]:
    """Distinct names of nodes that failed at any stage, in order of first failure."""
    return list(dict.fromkeys(f.node for f in failures))
