"""What the policy engine answers: a :class:`Decision` with its :class:`Reason` list and,
on a permit, the :class:`Obligations` the use must honour.

>>> d = Decision(False, (Reason("no-grant", "there is no grant 'g'"),), None, "00" * 32)
>>> d.to_json()["decision"], d.to_json()["reasons"][0]["code"]
('deny', 'no-grant')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.loss import PrivacyLoss
from policies.requests import ColumnRef


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: a Cedar rule id or a ledger/registry check."""

    code: str
    message: str
    grant_id: str | None = None


@dataclass(frozen=True)
class Obligations:
    """What a permit obliges the caller to do: spend at most ``loss``, touch only
    ``columns``, suppress released groups smaller than ``min_group_size`` (the grant's, or the
    firm's larger wish: this is the one place a use learns it)."""

    grant_id: str
    firm: str
    dataset: str
    loss: PrivacyLoss
    columns: tuple[ColumnRef, ...]
    min_group_size: int
    plan_digest: str | None = None  # a training job's approved plan (SHA-256 of its spec)


@dataclass(frozen=True)
class Decision:
    """A decision. Only one issued by :meth:`policies.Authority.decide` (it has a
    ``decision_id`` recorded by the authority) can be reserved, and only once; the
    reservation uses the obligations the authority stored, not the fields of this object."""

    permit: bool
    reasons: tuple[Reason, ...]
    obligations: Obligations | None
    policy_digest: str
    request_digest: str | None = None  # set by the authority when it logs the request
    log_index: int | None = None
    decision_id: str | None = None  # set by the authority when it issues a permit

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": "permit" if self.permit else "deny",
            "reasons": [
                {"code": r.code, "message": r.message, "grant_id": r.grant_id} for r in self.reasons
            ],
            "grant_id": self.obligations.grant_id if self.obligations else None,
            "request_digest": self.request_digest,
            "policy_digest": self.policy_digest,
            "plan_digest": self.obligations.plan_digest if self.obligations else None,
        }
