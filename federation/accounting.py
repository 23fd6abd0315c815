"""Privacy accounting for a federated job, per dataset (one dataset per node).

Everything a node releases about its rows during a job is charged here:

* DP-SGD training: the Poisson-subsampled Gaussian mechanism, composed over every local step of
  every round, accounted with Opacus' RDP accountant (or PRV, which gives an upper bound);
* the node's row count, released once through OpenDP's Laplace mechanism (``count_epsilon``);
* the final held-out evaluation, two counts through OpenDP's Laplace mechanism
  (``eval_epsilon`` in total).

The components compose by basic (sequential) composition: the epsilons add up and the delta is
that of DP-SGD. :func:`predict_cost` is computed from the configuration only, before any
training, so the ledger can reserve it; :func:`spent_cost` recomputes it from the steps that
were actually taken, which can only be fewer, so spent never exceeds the prediction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier

from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec

#: Fewest nodes a job must have to ask for client-level DP (see :mod:`federation.client_dp`).
MIN_CLIENT_DP_NODES = 20


@dataclass(frozen=True)
class PrivacyCost:
    """An (epsilon, delta) privacy loss on one dataset, with its parts."""

    epsilon: float
    delta: float
    components: Mapping[str, float] = field(default_factory=dict)

    def within(self, budget: PrivacyCost) -> bool:
        """True if this cost fits in ``budget`` (both epsilon and delta)."""
        return self.epsilon <= budget.epsilon and self.delta <= budget.delta


@dataclass(frozen=True)
class NodePlan:
    """The DP-SGD parameters one node uses, derived from the spec and public metadata."""

    sample_rate: float
    steps_per_round: int
    noise_multiplier: float


@dataclass(frozen=True)
class JobPlan:
    """Resolved per-node training parameters for a job."""

    nodes: Mapping[str, NodePlan]
    rounds: int

    def total_steps(self, node: str) -> int:
        return self.nodes[node].steps_per_round * self.rounds


def dpsgd_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at ``delta``.

    >>> round(dpsgd_epsilon(1.0, 0.01, 1000, 1e-5), 3)
    2.101
    """
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        # Opacus warns when the optimal RDP order is the largest one; the bound stays valid.
        warnings.filterwarnings("ignore", message="Optimal order")
        return float(acc.get_epsilon(delta=delta))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "rdp",
) -> float:
    """Smallest noise multiplier (to 0.01 in epsilon) whose epsilon is at most the target.

    >>> sigma = calibrate_noise_multiplier(1.0, 1e-5, 0.01, 1000)
    >>> dpsgd_epsilon(sigma, 0.01, 1000, 1e-5) <= 1.0
    True
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order")
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=0.01,
            )
    except ValueError as exc:
        raise InvalidJobError(
            f"target epsilon {target_epsilon} is too small for {steps} steps at sample rate "
            f"{sample_rate}; raise the epsilon, or lower the rounds, epochs or sample rate"
        ) from exc
    if dpsgd_epsilon(sigma, sample_rate, steps, delta, accountant) > target_epsilon:
        raise InvalidJobError("noise calibration did not reach the target epsilon")
    return float(sigma)


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


def plan_job(spec: JobSpec, rows_per_node: Mapping[str, int] | None = None) -> JobPlan:
    """Resolve sampling rate, steps and noise for every node.

    ``rows_per_node`` is the *public* row count of each dataset (from its catalog metadata); it
    is needed only when the spec gives ``batch_size`` instead of ``sample_rate``.
    """
    check_client_dp_nodes(spec)
    plans: dict[str, NodePlan] = {}
    for node in spec.nodes:
        if spec.sample_rate is not None:
            q = spec.sample_rate
        else:
            if rows_per_node is None or node not in rows_per_node:
                raise InvalidJobError(
                    f"the job gives batch_size, so the public row count of {node!r} is needed "
                    f"in rows_per_node; or give sample_rate instead"
                )
            rows = rows_per_node[node]
            if rows <= 0:
                raise InvalidJobError(f"rows_per_node[{node!r}] must be positive, got {rows}")
            q = min(1.0, spec.batch_size / rows)  # type: ignore[operator]
        public_rows = (rows_per_node or {}).get(node)
        if spec.dp and public_rows is not None and spec.target_delta >= 1.0 / max(public_rows, 1):
            raise InvalidJobError(
                f"target_delta={spec.target_delta} is not below 1/rows of {node!r} "
                f"({public_rows} rows); choose a smaller delta"
            )
        steps = max(1, math.ceil(spec.local_epochs / q))
        if not spec.dp:
            sigma = 0.0
        elif spec.noise_multiplier is not None:
            sigma = spec.noise_multiplier
        else:
            sgd_target = spec.target_epsilon - spec.count_epsilon - spec.eval_epsilon  # type: ignore[operator]
            if sgd_target <= 0:
                raise InvalidJobError(
                    f"target_epsilon={spec.target_epsilon} leaves nothing for training after "
                    f"count_epsilon={spec.count_epsilon} and eval_epsilon={spec.eval_epsilon}"
                )
            sigma = calibrate_noise_multiplier(
                sgd_target, spec.target_delta, q, steps * spec.rounds, spec.accountant
            )
        plans[node] = NodePlan(sample_rate=q, steps_per_round=steps, noise_multiplier=sigma)
    return JobPlan(nodes=plans, rounds=spec.rounds)


def _cost(spec: JobSpec, plan: NodePlan, steps: int, counted: bool, evaluated: bool) -> PrivacyCost:
    if not spec.dp:
        sgd = math.inf if steps else 0.0
    else:
        sgd = dpsgd_epsilon(
            plan.noise_multiplier, plan.sample_rate, steps, spec.target_delta, spec.accountant
        )
    count = spec.count_epsilon if counted else 0.0
    evaluation = spec.eval_epsilon if evaluated else 0.0
    return PrivacyCost(
        epsilon=sgd + count + evaluation,
        delta=spec.target_delta if steps else 0.0,
        components={"dpsgd": sgd, "row_count": count, "evaluation": evaluation},
    )


def predict_cost(
    spec: JobSpec, rows_per_node: Mapping[str, int] | None = None
) -> dict[str, PrivacyCost]:
    """The whole job's privacy cost per dataset, from its configuration alone.

    >>> spec = JobSpec(model="logreg", features=("x",), label="y", nodes=("a",),
    ...                sample_rate=0.01, target_epsilon=3.0, rounds=5)
    >>> predict_cost(spec)["a"].epsilon <= 3.0
    True
    """
    plan = plan_job(spec, rows_per_node)
    return {
        node: _cost(spec, p, plan.total_steps(node), counted=True, evaluated=True)
        for node, p in plan.nodes.items()
    }


def spent_cost(
    spec: JobSpec,
    plan: JobPlan,
    steps_taken: Mapping[str, int],
    counted: Mapping[str, bool],
    evaluated: Mapping[str, bool],
) -> dict[str, PrivacyCost]:
    """The cost actually spent per dataset, from what each node reported doing.

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
        out[node] = _cost(spec, p, steps, counted.get(node, False), evaluated.get(node, False))
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
