"""Conversions between the job's Python objects (:mod:`federation.job`,
:mod:`federation.model_card`, :mod:`federation.result`) and their ``sandbox.v1`` messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox.errors import TrainingError
from sandbox.protocol.v1 import sandbox_pb2 as pb

if TYPE_CHECKING:
    from federation.job import JobSpec
    from federation.model_card import ModelCard

__all__ = ["model_card_pb", "model_file", "round_pb", "spec_from_pb", "spec_pb"]


def spec_from_pb(message: pb.JobSpec) -> JobSpec:
    """A ``JobSpec`` message as :class:`federation.job.JobSpec`: fields left unset take the
    job's defaults (so ``dp`` unset is ``dp=True``, ``loss_epsilon`` unset is the default and
    0 releases no training loss); refuses an invalid job."""
    from federation.errors import InvalidJobError
    from federation.job import JobSpec

    data: dict[str, Any] = {}
    for fd, value in message.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            data[fd.name] = dict(value)
        elif fd.is_repeated:
            data[fd.name] = list(value)
        else:
            data[fd.name] = value
    try:
        return JobSpec.parse(data)
    except InvalidJobError as exc:
        raise TrainingError(f"the job is invalid: {exc}") from None


def spec_pb(spec: JobSpec) -> pb.JobSpec:
    """:class:`federation.job.JobSpec` as a ``JobSpec`` message (what a firm's client sends)."""
    data = {k: v for k, v in spec.model_dump().items() if v is not None}
    for key in ("features", "nodes", "classes"):
        if key in data:
            data[key] = list(data[key])
    return pb.JobSpec(**data)


def model_card_pb(card: ModelCard) -> pb.ModelCard:
    """A :class:`federation.model_card.ModelCard` as a ``ModelCard`` message."""
    message = pb.ModelCard(
        model=card.model,
        model_params=dict(card.model_params),
        features=list(card.features),
        label=card.label,
        strategy=card.strategy,
        rounds=card.rounds,
        differential_privacy=card.differential_privacy,
        privacy_unit=card.privacy_unit,
        accountant=card.accountant,
        max_grad_norm=card.max_grad_norm,
        config_hash=card.config_hash,
        failures=list(card.failures),
        randomness=dict(card.randomness),
        settings={k: str(v) for k, v in card.settings.items()},
        warnings=list(card.warnings),
        classes=list(card.classes),
        dp_class_shares=dict(card.dp_class_shares),
    )
    for name in (
        "dp_test_accuracy",
        "dp_test_auc",
        "dp_majority_baseline",
        "dp_positive_share",
        "loss_epsilon",
        "dp_test_accuracy_margin",
        "dp_majority_baseline_margin",
        "dp_test_auc_margin",
    ):
        value = getattr(card, name)
        if value is not None:
            setattr(message, name, value)
    for node in card.nodes:
        line = message.nodes.add(
            dataset=node.dataset,
            epsilon_spent=node.epsilon_spent,
            delta_spent=node.delta_spent,
            rounds_participated=node.rounds_participated,
        )
        if node.dp_rows is not None:
            line.dp_rows = node.dp_rows
        for name in ("dp_test_accuracy", "dp_test_auc", "dp_positive_share"):
            value = getattr(node, name)
            if value is not None:
                setattr(line, name, value)
    if card.client_level is not None:
        c = card.client_level
        message.client_level.CopyFrom(
            pb.ClientLevelCard(
                epsilon_spent=c.epsilon_spent,
                delta=c.delta,
                noise_multiplier=c.noise_multiplier,
                clipping_norm=c.clipping_norm,
                client_sample_rate=c.client_sample_rate,
                rounds_released=c.rounds_released,
            )
        )
    return message


def model_file(weights: Mapping[str, Any]) -> bytes:
    """The model file a firm downloads (``GetResult``'s ``model_weights``, what ``sandbox
    result --out`` writes): a serialized ``sandbox.v1.TaskTensors``, tensors sorted by name.
    The release entry's digest is this file's SHA-256, so a regulator can match the logged
    release with the file the firm holds, and the firm can check its file against the log."""
    from sandbox.federated_task import tensor_pb

    tensors = pb.TaskTensors(tensors=[tensor_pb(k, v) for k, v in sorted(weights.items())])
    data: bytes = tensors.SerializeToString()
    return data


def round_pb(m: Any) -> pb.RoundMetrics:
    """One round's metrics (``federation.result.RoundMetrics``) as a message."""
    message = pb.RoundMetrics(
        round=m.round,
        nodes=list(m.nodes),
        failed=list(m.failed),
        wall_s=m.wall_s,
        max_compute_s=m.max_compute_s,
        sum_compute_s=m.sum_compute_s,
        overhead_s=m.overhead_s,
        mean_update_norm=m.mean_update_norm,
        epsilon_spent=m.epsilon_spent,
        rounds=m.rounds,
    )
    if m.dp_loss is not None:
        message.dp_loss = m.dp_loss
    return message
