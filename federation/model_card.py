"""The model card released with a trained model.

It states what the model was trained on and what that cost, using only released values: DP row
counts (never exact ones), the epsilon/delta spent per dataset, DP held-out accuracy, and the
hash of the job configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from federation.job import JobSpec


@dataclass(frozen=True)
class NodeCard:
    """One dataset's line on the card."""

    dataset: str
    dp_rows: int | None
    epsilon_spent: float
    delta_spent: float
    rounds_participated: int
    dp_test_accuracy: float | None


@dataclass(frozen=True)
class ClientLevelCard:
    """Client-level DP of a job (unit: a whole node), reported apart from per-dataset costs."""

    epsilon_spent: float
    delta: float
    noise_multiplier: float
    clipping_norm: float
    client_sample_rate: float
    rounds_released: int


@dataclass(frozen=True)
class ModelCard:
    """Everything released about a trained model besides its weights."""

    model: str
    model_params: Mapping[str, int]
    features: tuple[str, ...]
    label: str
    strategy: str
    rounds: int
    differential_privacy: bool
    privacy_unit: str
    accountant: str
    max_grad_norm: float
    config_hash: str
    nodes: tuple[NodeCard, ...]
    dp_test_accuracy: float | None
    failures: tuple[str, ...]
    client_level: ClientLevelCard | None = None
    #: Which randomness the job fixed and where the rest came from (see :func:`randomness`).
    randomness: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The card as indented JSON (``inf`` epsilon for non-private jobs becomes a string)."""
        data = asdict(self)
        for node in data["nodes"]:
            if node["epsilon_spent"] == float("inf"):
                node["epsilon_spent"] = "inf"
        return json.dumps(data, indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        """A human-readable card."""
        lines = [
            f"# Model card: {self.model} predicting `{self.label}`",
            "",
            f"- configuration hash: `{self.config_hash}`",
            f"- strategy: {self.strategy}, rounds: {self.rounds}",
            f"- differential privacy: {self.differential_privacy} (unit: {self.privacy_unit}, "
            f"accountant: {self.accountant}, clipping norm {self.max_grad_norm})",
            f"- features: {', '.join(self.features)}",
            *[f"- randomness, {k.replace('_', ' ')}: {v}" for k, v in self.randomness.items()],
            f"- held-out accuracy (DP, all nodes): {_fmt(self.dp_test_accuracy)}",
            "",
            "| dataset | rows (DP) | epsilon | delta | rounds | held-out accuracy (DP) |",
            "|---|---|---|---|---|---|",
        ]
        for n in self.nodes:
            lines.append(
                f"| {n.dataset} | {n.dp_rows} | {n.epsilon_spent:.3f} | {n.delta_spent:g} | "
                f"{n.rounds_participated} | {_fmt(n.dp_test_accuracy)} |"
            )
        if self.client_level is not None:
            c = self.client_level
            lines += [
                "",
                f"Client-level DP (unit: a whole node, one guarantee for the federation): "
                f"epsilon {c.epsilon_spent:.3f} at delta {c.delta:g} over {c.rounds_released} "
                f"rounds (noise multiplier {c.noise_multiplier:.3f}, clipping norm "
                f"{c.clipping_norm}, node sampling rate {c.client_sample_rate}).",
            ]
        if self.failures:
            lines += ["", "Failures:", *[f"- {f}" for f in self.failures]]
        return "\n".join(lines) + "\n"


def randomness(spec: JobSpec) -> dict[str, str]:
    """What the requester fixed (the initial weights only) and what came from the nodes' CSPRNG.

    >>> spec = JobSpec(model="logreg", features=("a",), label="y", nodes=("n",),
    ...                sample_rate=0.1, target_epsilon=1.0, seed=7)
    >>> randomness(spec)["initial_weights"]
    'fixed by the job (seed 7)'
    """
    out = {"initial_weights": f"fixed by the job (seed {spec.seed})"}
    if spec.dp:
        out["sampling_and_noise"] = (
            "drawn on each node from the operating system's CSPRNG (os.urandom), re-seeded "
            "every DP-SGD step; not settable by the job"
        )
    else:
        out["sampling_and_noise"] = "none: non-private training (dp=False)"
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def build_model_card(
    spec: JobSpec,
    *,
    config_hash: str,
    dp_rows: Mapping[str, int],
    spent: Mapping[str, tuple[float, float]],
    rounds_participated: Mapping[str, int],
    dp_correct: Mapping[str, int],
    dp_total: Mapping[str, int],
    failures: tuple[str, ...],
    client_level: ClientLevelCard | None = None,
) -> ModelCard:
    """Assemble the card of a finished job from released values only.

    ``spec`` is the job's :class:`~federation.job.JobSpec`; accuracies are ratios of DP counts.
    """
    nodes = []
    for name in spec.nodes:
        eps, delta = spent[name]
        nodes.append(
            NodeCard(
                dataset=name,
                dp_rows=dp_rows.get(name),
                epsilon_spent=eps,
                delta_spent=delta,
                rounds_participated=rounds_participated.get(name, 0),
                dp_test_accuracy=_ratio(dp_correct.get(name), dp_total.get(name)),
            )
        )
    total_correct = sum(dp_correct.values()) if dp_correct else None
    total = sum(dp_total.values()) if dp_total else None
    return ModelCard(
        model=spec.model,
        model_params=dict(spec.model_params),
        features=tuple(spec.features),
        label=spec.label,
        strategy=spec.strategy,
        rounds=spec.rounds,
        differential_privacy=spec.dp,
        privacy_unit="person (at most one row per person)",
        accountant=spec.accountant,
        max_grad_norm=spec.max_grad_norm,
        config_hash=config_hash,
        nodes=tuple(nodes),
        dp_test_accuracy=_ratio(total_correct, total),
        failures=failures,
        client_level=client_level,
        randomness=randomness(spec),
    )


def _ratio(num: int | None, den: int | None) -> float | None:
    if num is None or not den:
        return None
    return min(1.0, max(0.0, num / den))
