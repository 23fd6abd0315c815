"""Access requests and grants as the SDK sees them: typed views of ``sandbox.v1``'s
``AccessRequest``, ``DepartmentReview`` and ``Grant``, and :func:`access_terms`, which builds
the ``AccessTerms`` a firm asks for from keyword arguments, a mapping or a YAML file.

>>> t = access_terms({"datasets": {"pums": {"epsilon": 1, "columns": {"sex": "group_by"}}},
...                   "purpose": "p", "legal_basis": "b", "valid_until": "2030-01-01"})
>>> t.datasets["pums"].columns["sex"] == pb.COLUMN_RULE_GROUP_BY, list(t.actions)
(True, [1])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sandbox.errors import ClientInvalidRequest
from sandbox.protocol.v1 import sandbox_pb2 as pb

_RULES = {
    "never": pb.COLUMN_RULE_NEVER,
    "filter_only": pb.COLUMN_RULE_FILTER_ONLY,
    "group_by": pb.COLUMN_RULE_GROUP_BY,
    "aggregate_only": pb.COLUMN_RULE_AGGREGATE_ONLY,
}
_RULE_NAMES = {v: k for k, v in _RULES.items()}
_ACTIONS = {"query": pb.ACTION_QUERY, "train": pb.ACTION_TRAIN}
_ACTION_NAMES = {v: k for k, v in _ACTIONS.items()}
_STATES = {
    pb.REQUEST_STATE_PENDING: "pending",
    pb.REQUEST_STATE_REFUSED: "refused",
    pb.REQUEST_STATE_GRANTED: "granted",
    pb.REQUEST_STATE_WITHDRAWN: "withdrawn",
}
_DECISIONS = {
    pb.REVIEW_DECISION_PENDING: "pending",
    pb.REVIEW_DECISION_APPROVED: "approved",
    pb.REVIEW_DECISION_REFUSED: "refused",
    pb.REVIEW_DECISION_AMENDED: "amended",
}
_TERM_FIELDS = frozenset(
    {"datasets", "purpose", "legal_basis", "actions", "epsilon_per_use", "min_group_size"}
    | {"models", "valid_from", "valid_until"}
)


def _bad(message: str) -> ClientInvalidRequest:
    return ClientInvalidRequest(message, "INVALID_ARGUMENT")


def _ms(value: Any, name: str) -> int:
    """Milliseconds since the epoch from a date, datetime, ISO text or a number of ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(f"{name} {value!r} is not an ISO date like 2026-12-31") from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    raise _bad(f"{name} must be a date, like 2026-12-31")


def _rule(value: Any, column: str) -> pb.ColumnRule:
    rule = _RULES.get(str(value).lower().replace("-", "_"))
    if rule is None:
        raise _bad(f"column {column!r}: rule {value!r} is not one of {sorted(_RULES)}")
    return rule


def dataset_terms(data: Mapping[str, Any]) -> pb.DatasetTerms:
    """``DatasetTerms`` from ``{"epsilon": E, "delta": D, "columns": {name: rule}}``; rules are
    ``never``, ``filter_only``, ``group_by``, ``aggregate_only``."""
    unknown = sorted(set(data) - {"epsilon", "delta", "columns"})
    if unknown:
        raise _bad(f"unknown dataset terms {unknown}; use epsilon, delta, columns")
    columns = data.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise _bad("columns must map each column to never/filter_only/group_by/aggregate_only")
    return pb.DatasetTerms(
        epsilon=float(data.get("epsilon", 0.0)),
        delta=float(data.get("delta", 0.0)),
        columns={str(c): _rule(r, str(c)) for c, r in columns.items()},
    )


def access_terms(data: Mapping[str, Any] | Path | str) -> pb.AccessTerms:
    """The ``AccessTerms`` of a mapping or a YAML/JSON file (fields ``datasets``, ``purpose``,
    ``legal_basis``, ``actions`` [query, train], ``epsilon_per_use``, ``min_group_size``,
    ``models``, ``valid_from``, ``valid_until``)."""
    if isinstance(data, Path | str):
        data = _read_terms(Path(data))
    unknown = sorted(set(data) - _TERM_FIELDS)
    if unknown:
        raise _bad(f"unknown access terms {unknown}; use {sorted(_TERM_FIELDS)}")
    datasets = data.get("datasets") or {}
    if not isinstance(datasets, Mapping) or not datasets:
        raise _bad("the terms name no dataset; give datasets: {NAME: {epsilon, columns}}")
    actions = data.get("actions") or ["query"]
    wrong = [a for a in actions if a not in _ACTIONS]
    if wrong:
        raise _bad(f"actions {wrong} are not query or train")
    if data.get("valid_until") is None:
        raise _bad("the terms need valid_until (the last day of access, like 2026-12-31)")
    terms = pb.AccessTerms(
        datasets={str(n): dataset_terms(t) for n, t in datasets.items()},
        purpose=str(data.get("purpose") or ""),
        legal_basis=str(data.get("legal_basis") or ""),
        actions=[_ACTIONS[a] for a in actions],
        epsilon_per_use=float(data.get("epsilon_per_use") or 0.0),
        min_group_size=int(data.get("min_group_size") or 0),
        models=[str(m) for m in data.get("models") or ()],
        valid_until_ms=_ms(data["valid_until"], "valid_until"),
    )
    if data.get("valid_from") is not None:
        terms.valid_from_ms = _ms(data["valid_from"], "valid_from")
    return terms


def _read_terms(path: Path) -> dict[str, Any]:
    import yaml  # only when terms come from a file

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad(f"cannot read the terms file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise _bad(f"the terms file {path} is not valid YAML/JSON") from None
    if not isinstance(loaded, dict):
        raise _bad(f"the terms file {path} must be a mapping of datasets, purpose, ...")
    return loaded


def _when(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def terms_dict(terms: pb.AccessTerms) -> dict[str, Any]:
    """Plain values of ``AccessTerms`` (the form :func:`access_terms` reads)."""
    return {
        "datasets": {
            name: {
                "epsilon": t.epsilon,
                "delta": t.delta,
                "columns": {c: _RULE_NAMES.get(r, "never") for c, r in sorted(t.columns.items())},
            }
            for name, t in sorted(terms.datasets.items())
        },
        "purpose": terms.purpose,
        "legal_basis": terms.legal_basis,
        "actions": [_ACTION_NAMES.get(a, "unspecified") for a in terms.actions],
        "epsilon_per_use": terms.epsilon_per_use,
        "min_group_size": terms.min_group_size,
        "models": list(terms.models),
        "valid_from_ms": terms.valid_from_ms,
        "valid_until_ms": terms.valid_until_ms,
    }


@dataclass(frozen=True)
class Review:
    """One department's answer for one requested dataset."""

    department: str
    dataset: str
    decision: str  # pending, approved, refused or amended
    reason: str
    reviewer: str
    decided: datetime | None

    @classmethod
    def from_pb(cls, m: pb.DepartmentReview) -> Review:
        decision = _DECISIONS.get(m.decision, "unspecified")
        return cls(m.department, m.dataset, decision, m.reason, m.reviewer, _when(m.decided_ms))


@dataclass(frozen=True)
class GrantInfo:
    """One version of a grant as the authority issued it."""

    grant_id: str
    firm: str
    terms: dict[str, Any]
    approved_by: str
    version: int
    revoked: bool
    revoked_reason: str | None

    @classmethod
    def from_pb(cls, m: pb.Grant) -> GrantInfo:
        reason = m.revoked_reason if m.HasField("revoked_reason") else None
        return cls(
            m.grant_id, m.firm, terms_dict(m.terms), m.approved_by, m.version, m.revoked, reason
        )


@dataclass(frozen=True)
class RequestInfo:
    """An access request, its reviews and (once granted) its grant."""

    request_id: str
    firm: str
    state: str  # pending, refused, granted or withdrawn
    terms: dict[str, Any]
    reviews: tuple[Review, ...]
    grant: GrantInfo | None
    submitted: datetime | None
    log_index: int

    @classmethod
    def from_pb(cls, m: pb.AccessRequest) -> RequestInfo:
        grant = GrantInfo.from_pb(m.grant) if m.HasField("grant") and m.grant.grant_id else None
        return cls(
            request_id=m.request_id,
            firm=m.firm,
            state=_STATES.get(m.state, "unspecified"),
            terms=terms_dict(m.terms),
            reviews=tuple(Review.from_pb(r) for r in m.reviews),
            grant=grant,
            submitted=_when(m.submitted_ms),
            log_index=m.log_index,
        )

    def waiting_for(self) -> list[str]:
        """The departments that have not answered yet (``department/dataset``)."""
        return [f"{r.department}/{r.dataset}" for r in self.reviews if r.decision == "pending"]


__all__ = [
    "GrantInfo",
    "RequestInfo",
    "Review",
    "access_terms",
    "dataset_terms",
    "terms_dict",
]
