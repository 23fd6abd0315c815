"""What a federated job returns: final weights, per-round metrics, spend and failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from federation.accounting import PrivacyCost
from federation.model_card import ModelCard


@dataclass(frozen=True)
class NodeFailure:
    """A node that did not answer a step of the job."""

    node: str
    stage: str  # "describe", "train round N", "evaluate"
    reason: str


@dataclass(frozen=True)
class RoundMetrics:
    """One training round, seen from the server.

    ``overhead_s`` is the round's wall time minus the slowest node's local compute: the time
    spent in messaging, scheduling and aggregation.
    """

    round: int
    nodes: tuple[str, ...]
    failed: tuple[str, ...]
    wall_s: float
    max_compute_s: float
    sum_compute_s: float
    overhead_s: float
    mean_update_norm: float
    #: The round's mean training loss (nats per row): the nodes' DP loss sums over their DP
    #: row counts; None when the job releases no loss (``loss_epsilon=0``).
    dp_loss: float | None = None
    #: The largest epsilon spent on any dataset after this round (DP-SGD so far, row count,
    #: losses so far; the evaluation comes after the last round).
    epsilon_spent: float = 0.0
    #: The job's number of rounds in all.
    rounds: int = 0


@dataclass
class TrainingResult:
    """The outcome of :func:`federation.simulation.run_simulation`.

    ``spent`` is what the ledger must charge (never above ``predicted``, which it reserved);
    it is charged even when ``status == "aborted"``, because updates did leave the nodes.
    """

    status: Literal["completed", "aborted"]
    weights: dict[str, np.ndarray] | None
    rounds: list[RoundMetrics]
    predicted: dict[str, PrivacyCost]
    spent: dict[str, PrivacyCost]
    failures: list[NodeFailure]
    model_card: ModelCard | None
    abort_reason: str | None = None
    round_weights: list[dict[str, np.ndarray]] = field(default_factory=list)
    #: Client-level DP (``spec.client_dp``): one guarantee for the whole federation (unit: a
    #: node), reserved before the job and spent over the rounds released; None otherwise.
    client_level_predicted: PrivacyCost | None = None
    client_level_spent: PrivacyCost | None = None
