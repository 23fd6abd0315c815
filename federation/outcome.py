"""What the ``ServerApp`` records while a job runs, and how it becomes a
:class:`~federation.result.TrainingResult` with the spend and the model card.

The spend is recomputed by :func:`~federation.accounting.spent_cost` from the steps the nodes
reported (never above the plan's prediction); a node the server never identified is charged
what was reserved for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from federation.accounting import (
    JobPlan,
    PrivacyCost,
    client_level_cost,
    dataset_cost,
    spent_cost,
)
from federation.errors import BudgetExceededError
from federation.job import JobSpec
from federation.model_card import ClientLevelCard, ModelCard, build_model_card
from federation.result import NodeFailure, RoundMetrics, TrainingResult

Weights = dict[str, np.ndarray]


@dataclass
class JobOutcome:
    """Filled in by the ServerApp while the job runs; read by the runner afterwards."""

    dp_rows: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    rounds_participated: dict[str, int] = field(default_factory=dict)
    #: Rounds each node was asked to train (answered or not): the loss releases charged.
    loss_rounds: dict[str, int] = field(default_factory=dict)
    evaluated: dict[str, bool] = field(default_factory=dict)
    dp_correct: dict[str, int] = field(default_factory=dict)
    dp_total: dict[str, int] = field(default_factory=dict)
    #: Each node's released evaluation histogram (``pos-i``/``neg-i`` cells, DP counts).
    dp_histograms: dict[str, dict[str, int]] = field(default_factory=dict)
    rounds: list[RoundMetrics] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    weights: Weights | None = None
    round_weights: list[Weights] = field(default_factory=list)
    abort_reason: str | None = None
    finished: bool = False
    client_rounds: int = 0  # rounds released under client-level DP

    @property
    def completed(self) -> bool:
        """True if the ServerApp finished every round and the evaluation."""
        return self.finished and self.abort_reason is None and self.weights is not None


def job_spent(spec: JobSpec, plan: JobPlan, outcome: JobOutcome) -> dict[str, PrivacyCost]:
    """What each dataset spent; refuses (:class:`BudgetExceededError`) to go above the plan."""
    known = set(outcome.dp_rows)
    spent = spent_cost(
        spec,
        plan,
        outcome.steps,
        counted={n: n in known for n in spec.nodes},
        evaluated=outcome.evaluated,
        loss_rounds=outcome.loss_rounds,
    )
    for name in spec.nodes:
        if name not in known:
            # The server never identified this node: charge what was reserved.
            spent[name] = plan.predicted[name]
        if spent[name].epsilon > plan.predicted[name].epsilon + 1e-9:
            raise BudgetExceededError(
                f"spent epsilon on {name!r} exceeds the reservation; the model is not released. "
                "Treat the nodes' reports as faulty"
            )
    return spent


def epsilon_so_far(spec: JobSpec, plan: JobPlan, outcome: JobOutcome) -> float:
    """The largest epsilon spent on any dataset so far: DP-SGD steps taken (accountant), the
    row count and the training losses released; 0 before any node is known."""
    spent = [
        dataset_cost(
            spec,
            plan.nodes[name],
            outcome.steps.get(name, 0),
            counted=name in outcome.dp_rows,
            evaluated=outcome.evaluated.get(name, False),
            loss_rounds=outcome.loss_rounds.get(name, 0),
        ).epsilon
        for name in spec.nodes
        if name in plan.nodes
    ]
    return max(spent, default=0.0)


def client_level_card(
    spec: JobSpec, spent: PrivacyCost | None, rounds: int
) -> ClientLevelCard | None:
    """The model card's client-level DP line, if the job used it."""
    if spent is None:
        return None
    return ClientLevelCard(
        epsilon_spent=spent.epsilon,
        delta=spec.client_delta,
        noise_multiplier=float(spent.components["noise_multiplier"]),
        clipping_norm=spec.client_clipping_norm,
        client_sample_rate=spec.client_sample_rate,
        rounds_released=rounds,
    )


def _card(
    spec: JobSpec,
    plan: JobPlan,
    outcome: JobOutcome,
    spent: dict[str, PrivacyCost],
    client: ClientLevelCard | None,
) -> ModelCard:
    return build_model_card(
        spec,
        config_hash=spec.config_hash(),
        dp_rows=outcome.dp_rows,
        spent={n: (c.epsilon, c.delta) for n, c in spent.items()},
        rounds_participated=outcome.rounds_participated,
        dp_correct=outcome.dp_correct,
        dp_total=outcome.dp_total,
        failures=tuple(f"{f.node} at {f.stage}: {f.reason}" for f in outcome.failures),
        client_level=client,
        dp_histograms=outcome.dp_histograms,
        noise_multipliers={n: p.noise_multiplier for n, p in plan.nodes.items()},
    )


def collect_result(spec: JobSpec, plan: JobPlan, outcome: JobOutcome) -> TrainingResult:
    """Turn what the ServerApp recorded into a :class:`TrainingResult` with spend and card."""
    spent = job_spent(spec, plan, outcome)
    client_spent = client_level_cost(
        spec, outcome.client_rounds, noise_multiplier=plan.client_noise_multiplier
    )
    client = client_level_card(spec, client_spent, outcome.client_rounds)
    completed = outcome.completed
    reason = outcome.abort_reason
    if not outcome.finished:
        reason = "the runner ended before the ServerApp finished; check the nodes and resubmit"
    return TrainingResult(
        status="completed" if completed else "aborted",
        weights=outcome.weights if completed else None,
        rounds=outcome.rounds,
        predicted=dict(plan.predicted),
        spent=spent,
        failures=outcome.failures,
        model_card=_card(spec, plan, outcome, spent, client) if completed else None,
        abort_reason=reason,
        round_weights=outcome.round_weights,
        client_level_predicted=plan.client_level,
        client_level_spent=client_spent,
    )
