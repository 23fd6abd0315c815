"""Training jobs as the SDK sees them: :func:`job_spec` builds ``sandbox.v1``'s ``JobSpec`` from
a ``federation.job.JobSpec``, a mapping or a YAML/JSON file (validated by that class, so every
default is filled in before it is sent); typed views of ``JobEvent``, ``JobSummary`` and
``GetResultResponse``. The training stack is imported only when a job is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from sandbox.errors import ClientInvalidRequest
from sandbox.protocol.v1 import sandbox_pb2 as pb


def job_spec(spec: Any) -> pb.JobSpec:
    """``pb.JobSpec`` of a ``federation.job.JobSpec``, a mapping or a path to a YAML/JSON job."""
    from federation.errors import InvalidJobError
    from federation.job import JobSpec

    try:
        if isinstance(spec, Path | str):
            spec = JobSpec.from_file(spec)
        elif isinstance(spec, Mapping):
            spec = JobSpec.parse(dict(spec))
    except InvalidJobError as exc:
        raise ClientInvalidRequest(str(exc), "INVALID_ARGUMENT") from None
    if not isinstance(spec, JobSpec):
        raise ClientInvalidRequest("a job is a JobSpec, a mapping or a YAML/JSON file path")
    data = {k: v for k, v in spec.model_dump(mode="json").items() if v is not None}
    try:
        message: pb.JobSpec = json_format.ParseDict(data, pb.JobSpec())
    except json_format.ParseError as exc:
        raise ClientInvalidRequest(f"the job cannot be sent: {exc}", "INVALID_ARGUMENT") from None
    return message


def _spent(spent: Any) -> dict[str, tuple[float, float]]:
    return {name: (s.epsilon, s.delta) for name, s in sorted(spent.items())}


def _card(card: pb.ModelCard) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(card, preserving_proto_field_name=True)
    return out


@dataclass(frozen=True)
class JobSubmitted:
    job_id: str
    grant_id: str
    config_hash: str
    reserved: dict[str, tuple[float, float]]
    log_index: int

    @classmethod
    def from_pb(cls, m: pb.SubmitTrainingJobResponse) -> JobSubmitted:
        return cls(m.job_id, m.grant_id, m.config_hash, _spent(m.reserved), m.log_index)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: ``kind`` is ``accepted``, ``round``, ``failure`` or ``finished``;
    ``data`` holds its fields (for ``finished``: status, abort_reason, model_card, spent,
    result_id)."""

    job_id: str
    timestamp_ms: int
    kind: str
    data: dict[str, Any]

    @classmethod
    def from_pb(cls, m: pb.JobEvent) -> JobEvent:
        kind = m.WhichOneof("event") or "unknown"
        data: dict[str, Any]
        if kind == "accepted":
            data = {"message": m.accepted}
        elif kind == "finished":
            f = m.finished
            data = {
                "status": f.status,
                "abort_reason": f.abort_reason if f.HasField("abort_reason") else None,
                "model_card": _card(f.model_card),
                "spent": _spent(f.spent),
                "result_id": f.result_id,
            }
        elif kind in ("round", "failure"):
            data = json_format.MessageToDict(
                getattr(m, kind),
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        else:
            data = {}
        return cls(m.job_id, m.timestamp_ms, kind, data)

    def line(self) -> str:
        """One human-readable line."""
        d = self.data
        if self.kind == "accepted":
            return f"accepted: {d['message']}"
        if self.kind == "round":
            failed = f", failed {', '.join(d['failed'])}" if d.get("failed") else ""
            return f"round {d['round']}: {len(d.get('nodes', []))} nodes{failed}"
        if self.kind == "failure":
            return f"node {d.get('node')} failed at {d.get('stage')}: {d.get('reason')}"
        if self.kind == "finished":
            why = f" ({d['abort_reason']})" if d.get("abort_reason") else ""
            return f"{d['status']}{why}; result {d['result_id']}"
        return self.kind


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    grant_id: str
    status: str
    datasets: tuple[str, ...]
    rounds: int
    rounds_done: int
    submitted_ms: int
    result_id: str

    @classmethod
    def from_pb(cls, m: pb.JobSummary) -> JobInfo:
        return cls(
            m.job_id,
            m.grant_id,
            m.status,
            tuple(m.datasets),
            m.rounds,
            m.rounds_done,
            m.submitted_ms,
            m.result_id,
        )


@dataclass(frozen=True)
class TrainedModel:
    """A DP-trained model: its card, spend and weights (a DP release)."""

    job_id: str
    status: str
    model_card: dict[str, Any]
    spent: dict[str, tuple[float, float]]
    weights_format: str
    weights: bytes = field(repr=False)

    @classmethod
    def from_pb(cls, m: pb.TrainingResult) -> TrainedModel:
        return cls(
            m.job_id,
            m.status,
            _card(m.model_card),
            _spent(m.spent),
            m.weights_format,
            bytes(m.model_weights),
        )


__all__ = ["JobEvent", "JobInfo", "JobSubmitted", "TrainedModel", "job_spec"]
