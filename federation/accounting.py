"""Privacy accounting for a federated job, per dataset (one dataset per node).

Everything a node releases about its rows during a job is charged here:

* DP-SGD training: the Poisson-subsampled Gaussian mechanism, composed over every local step of
  every round, accounted with Opacus' RDP accountant (or PRV, which gives an upper bound);
* the node's row count, released once through OpenDP's Laplace mechanism (``count_epsilon``);
* the final held-out evaluation, a histogram (binary) or confusion matrix (multi-class) of
  disjoint DP counts through OpenDP's Laplace mechanism (``eval_epsilon`` in total);
* the training loss, one clipped sum per round through OpenDP's Laplace mechanism
  (``loss_epsilon / rounds`` per round, ``loss_epsilon`` over the job; component
  ``training_loss``).

The components compose by basic (sequential) composition: the epsilons add up and the delta is
that of DP-SGD. The accountant (:mod:`federation.accountant`, whose functions are re-exported
here) is consulted once per job: :func:`plan_job` resolves every
node's sampling rate, steps and noise and predicts each dataset's cost from the configuration
alone, before any training, so the ledger can reserve it. The runners, the nodes' approvals and
the model card all read that one :class:`JobPlan`. :func:`spent_cost` recomputes the cost from
the steps that were actually taken, which can only be fewer, so spent never exceeds the
prediction.

>>> spec = JobSpec(model="logreg", features=("x",), label="y", nodes=("a",),
...                sample_rate=0.01, target_epsilon=3.0, rounds=5)
>>> plan = plan_job(spec)
>>> plan.total_steps("a"), plan.predicted["a"].epsilon <= 3.0
(500, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from federation.accountant import (
    PrivacyCost,
    calibrate_noise_multiplier,
    client_level_epsilon,
    dpsgd_epsilon,
)
from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec

__all__ = [
    "MIN_CLIENT_DP_NODES",
    "JobPlan",
    "NodePlan",
    "PrivacyCost",
    "calibrate_noise_multiplier",
    "check_budget",
    "check_client_dp_nodes",
    "client_level_cost",
    "client_level_epsilon",
    "client_noise_multiplier",
    "dataset_cost",
    "dpsgd_epsilon",
    "loss_cost",
    "plan_job",
    "plan_node",
    "predict_cost",
    "sample_rate_for",
    "sgd_target_epsilon",
    "spent_cost",
    "steps_per_round",
]

#: Fewest nodes a job must have to ask for client-level DP (see :mod:`federation.client_dp`).
MIN_CLIENT_DP_NODES = 20
#: Most DP-SGD steps a node may take in one round; a tinier sample rate is refused (it would
#: also overflow the step count) rather than run for ever.
MAX_STEPS_PER_ROUND = 1_000_000


@dataclass(frozen=True)
class NodePlan:
    """The DP-SGD parameters one node uses, derived from the spec and public metadata."""

    sample_rate: float
    steps_per_round: int
    noise_multiplier: float


@dataclass(frozen=True)
class JobPlan:
    """A job resolved once: every node's DP-SGD parameters and every dataset's predicted cost.

    ``config_hash`` and ``rows_per_node`` record what the plan was made from, so a runner given
    a plan can check that it belongs to the job it runs. ``client_noise_multiplier`` and
    ``client_level`` are set only for client-level DP (``spec.client_dp``).
    """

    nodes: Mapping[str, NodePlan]
    rounds: int
    predicted: Mapping[str, PrivacyCost] = field(default_factory=dict)
    config_hash: str = ""
    rows_per_node: Mapping[str, int] | None = None
    client_noise_multiplier: float | None = None
    client_level: PrivacyCost | None = None

    def total_steps(self, node: str) -> int:
        """The DP-SGD steps ``node`` may take over the whole job."""
        return self.nodes[node].steps_per_round * self.rounds


def check_client_dp_nodes(spec: JobSpec) -> None:
    """Refuse client-level DP (``client_dp=True``) for a job with fewer than
    :data:`MIN_CLIENT_DP_NODES` nodes, with :class:`InvalidJobError`."""
    if spec.client_dp and len(spec.nodes) < MIN_CLIENT_DP_NODES:
        raise InvalidJobError(
            f"client-level DP needs at least {MIN_CLIENT_DP_NODES} nodes, this job has "
            f"{len(spec.nodes)}: with a handful of departments it would protect whole "
            "departments, not persons, and drown the model in noise. Remove client_dp; the "
            "record-level DP-SGD of every node (dp=True) already protects each person"
        )


def sample_rate_for(spec: JobSpec, node: str, rows_per_node: Mapping[str, int] | None) -> float:
    """The Poisson sampling rate of ``node``: ``sample_rate``, or ``batch_size / public rows``."""
    if spec.sample_rate is not None:
        return spec.sample_rate
    rows = (rows_per_node or {}).get(node)
    if rows is None or spec.batch_size is None:
        raise InvalidJobError(
            f"the job gives batch_size, so the public row count of {node!r} is needed "
            f"in rows_per_node; or give sample_rate instead"
        )
    if rows <= 0:
        raise InvalidJobError(
            f"rows_per_node[{node!r}] must be positive, got {rows}; pass the dataset's public "
            "row count from its catalog metadata"
        )
    return min(1.0, spec.batch_size / rows)


def steps_per_round(local_epochs: float, sample_rate: float) -> int:
    """DP-SGD steps per round: ``local_epochs`` expected passes over the rows.

    >>> steps_per_round(1.0, 0.01)
    100
    """
    steps = local_epochs / sample_rate
    if not steps <= MAX_STEPS_PER_ROUND:
        raise InvalidJobError(
            f"local_epochs / sample_rate asks for more than {MAX_STEPS_PER_ROUND:,} DP-SGD steps "
            "per round; raise sample_rate (or batch_size) or lower local_epochs"
        )
    return max(1, math.ceil(steps))


def sgd_target_epsilon(spec: JobSpec) -> float:
    """What ``target_epsilon`` leaves for DP-SGD after the row count, the evaluation and the
    per-round training loss."""
    target = spec.target_epsilon if spec.target_epsilon is not None else math.inf
    left = target - spec.count_epsilon - spec.eval_epsilon - spec.loss_epsilon
    if left <= 0:
        raise InvalidJobError(
            f"target_epsilon={spec.target_epsilon} leaves nothing for training after "
            f"count_epsilon={spec.count_epsilon}, eval_epsilon={spec.eval_epsilon} and "
            f"loss_epsilon={spec.loss_epsilon}; raise target_epsilon or lower the other three"
        )
    return left


def _check_delta(spec: JobSpec, node: str, rows_per_node: Mapping[str, int] | None) -> None:
    rows = (rows_per_node or {}).get(node)
    if spec.dp and rows is not None and spec.target_delta >= 1.0 / max(rows, 1):
        raise InvalidJobError(
            f"target_delta={spec.target_delta} is not below 1/rows of {node!r} "
            f"({rows} rows); choose a smaller delta"
        )


def plan_node(spec: JobSpec, node: str, rows_per_node: Mapping[str, int] | None) -> NodePlan:
    """Sampling rate, steps per round and noise multiplier of one node."""
    q = sample_rate_for(spec, node, rows_per_node)
    _check_delta(spec, node, rows_per_node)
    steps = steps_per_round(spec.local_epochs, q)
    if not spec.dp:
        sigma = 0.0
    elif spec.noise_multiplier is not None:
        sigma = spec.noise_multiplier
    else:
        sigma = calibrate_noise_multiplier(
            sgd_target_epsilon(spec), spec.target_delta, q, steps * spec.rounds, spec.accountant
        )
    return NodePlan(sample_rate=q, steps_per_round=steps, noise_multiplier=sigma)


def plan_job(spec: JobSpec, rows_per_node: Mapping[str, int] | None = None) -> JobPlan:
    """Resolve sampling rate, steps and noise for every node and predict every dataset's cost.

    ``rows_per_node`` is the *public* row count of each dataset (from its catalog metadata); it
    is needed when the spec gives ``batch_size`` instead of ``sample_rate``, and checks that
    ``target_delta`` is below one over the rows.
    """
    check_client_dp_nodes(spec)
    nodes = {node: plan_node(spec, node, rows_per_node) for node in spec.nodes}
    predicted = {
        node: dataset_cost(
            spec,
            p,
            p.steps_per_round * spec.rounds,
            counted=True,
            evaluated=True,
            loss_rounds=spec.rounds,
        )
        for node, p in nodes.items()
    }
    client_sigma = client_noise_multiplier(spec) if spec.client_dp else None
    return JobPlan(
        nodes=nodes,
        rounds=spec.rounds,
        predicted=predicted,
        config_hash=spec.config_hash(),
        rows_per_node=dict(rows_per_node) if rows_per_node is not None else None,
        client_noise_multiplier=client_sigma,
        client_level=client_level_cost(spec, noise_multiplier=client_sigma),
    )


def loss_cost(spec: JobSpec, loss_rounds: int) -> float:
    """Epsilon of ``loss_rounds`` releases of the round's DP training loss (basic composition:
    ``loss_epsilon / rounds`` each).

    >>> spec = JobSpec(model="logreg", features=("x",), label="y", nodes=("a",),
    ...                sample_rate=0.01, target_epsilon=3.0, rounds=4, loss_epsilon=0.2)
    >>> loss_cost(spec, 2)
    0.1
    """
    if loss_rounds <= 0 or spec.loss_epsilon == 0:
        return 0.0
    if loss_rounds >= spec.rounds:
        return spec.loss_epsilon
    return spec.loss_epsilon * loss_rounds / spec.rounds


def dataset_cost(
    spec: JobSpec,
    plan: NodePlan,
    steps: int,
    *,
    counted: bool,
    evaluated: bool,
    loss_rounds: int = 0,
) -> PrivacyCost:
    """The cost on one dataset of ``steps`` DP-SGD steps, plus the row count and evaluation
    when they were released, plus ``loss_rounds`` releases of the training loss."""
    if not spec.dp:
        sgd = math.inf if steps else 0.0
    else:
        sgd = dpsgd_epsilon(
            plan.noise_multiplier, plan.sample_rate, steps, spec.target_delta, spec.accountant
        )
    count = spec.count_epsilon if counted else 0.0
    evaluation = spec.eval_epsilon if evaluated else 0.0
    loss = loss_cost(spec, loss_rounds)
    return PrivacyCost(
        epsilon=sgd + count + evaluation + loss,
        delta=spec.target_delta if steps else 0.0,
        components={
            "dpsgd": sgd,
            "row_count": count,
            "evaluation": evaluation,
            "training_loss": loss,
        },
    )


def predict_cost(
    spec: JobSpec, rows_per_node: Mapping[str, int] | None = None
) -> dict[str, PrivacyCost]:
    """The whole job's privacy cost per dataset: ``plan_job(spec, rows_per_node).predicted``.

    >>> spec = JobSpec(model="logreg", features=("x",), label="y", nodes=("a",),
    ...                sample_rate=0.01, target_epsilon=3.0, rounds=5)
    >>> predict_cost(spec)["a"].epsilon <= 3.0
    True
    """
    return dict(plan_job(spec, rows_per_node).predicted)


def spent_cost(
    spec: JobSpec,
    plan: JobPlan,
    steps_taken: Mapping[str, int],
    counted: Mapping[str, bool],
    evaluated: Mapping[str, bool],
    loss_rounds: Mapping[str, int] | None = None,
) -> dict[str, PrivacyCost]:
    """The cost actually spent per dataset, from what each node reported doing.

    ``loss_rounds`` counts, per dataset, the rounds it was asked to train (answered or not: a
    node that failed may have released its loss), each charged ``loss_epsilon / rounds``.

    Raises :class:`BudgetExceededError` if a node took more steps than planned (it never should:
    nodes refuse to).
    """
    out: dict[str, PrivacyCost] = {}
    for node, p in plan.nodes.items():
        steps = steps_taken.get(node, 0)
        if steps > plan.total_steps(node):
            raise BudgetExceededError(
                f"node {node!r} reports {steps} steps, more than the {plan.total_steps(node)} "
                f"reserved; treat this node as faulty"
            )
        out[node] = dataset_cost(
            spec,
            p,
            steps,
            counted=counted.get(node, False),
            evaluated=evaluated.get(node, False),
            loss_rounds=(loss_rounds or {}).get(node, 0),
        )
    return out


def check_budget(
    predicted: Mapping[str, PrivacyCost],
    budget: PrivacyCost | Mapping[str, PrivacyCost],
) -> None:
    """Raise :class:`BudgetExceededError` if any dataset's predicted cost exceeds its budget."""
    problems = []
    for node, cost in predicted.items():
        b = budget if isinstance(budget, PrivacyCost) else budget.get(node)
        if b is None:
            problems.append(f"{node}: no budget given")
        elif not cost.within(b):
            problems.append(
                f"{node}: predicted epsilon {cost.epsilon:.4f}, delta {cost.delta:g} exceeds "
                f"budget epsilon {b.epsilon:.4f}, delta {b.delta:g}"
            )
    if problems:
        raise BudgetExceededError(
            "the job would exceed its privacy budget and was not started ("
            + "; ".join(problems)
            + "). Lower target_epsilon, rounds or local_epochs, or ask for a larger budget."
        )


# --- client-level DP (unit: a whole node; see federation.client_dp) ---------------------------


def client_noise_multiplier(spec: JobSpec) -> float:
    """The noise multiplier of the node-level Gaussian mechanism: given, or calibrated so the
    job's client-level epsilon is at most ``client_target_epsilon``."""
    check_client_dp_nodes(spec)
    if not spec.client_dp:
        raise InvalidJobError(
            "this job does not use client-level DP (client_dp=False); set client_dp=True "
            "to ask for it"
        )
    if spec.client_noise_multiplier is not None:
        return spec.client_noise_multiplier
    target = spec.client_target_epsilon
    if target is None:
        raise InvalidJobError("with client_dp=True give client_target_epsilon or a noise")
    return calibrate_noise_multiplier(
        target, spec.client_delta, spec.client_sample_rate, spec.rounds
    )


def client_level_cost(
    spec: JobSpec,
    rounds_released: int | None = None,
    noise_multiplier: float | None = None,
) -> PrivacyCost | None:
    """The job's client-level cost (one federation-wide guarantee), or None without client DP.

    ``rounds_released`` defaults to every round of the job (the prediction);
    ``noise_multiplier`` to :func:`client_noise_multiplier` (pass the plan's to skip it).
    """
    if not spec.client_dp:
        return None
    sigma = client_noise_multiplier(spec) if noise_multiplier is None else noise_multiplier
    rounds = spec.rounds if rounds_released is None else rounds_released
    eps = client_level_epsilon(sigma, spec.client_sample_rate, rounds, spec.client_delta)
    return PrivacyCost(
        epsilon=eps,
        delta=spec.client_delta if rounds else 0.0,
        components={"client_rounds": float(rounds), "noise_multiplier": sigma},
    )
