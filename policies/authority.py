"""The policy authority: one object that grants, decides, charges and records every use.

This is the facade the query service and training jobs call. Each call writes its entry to
the transparency log, so the log holds every grant change, request, decision, reservation,
release (with the SHA-256 of what was released) and refund.

>>> import tempfile, pathlib
>>> authority = Authority(pathlib.Path(tempfile.mkdtemp()))
>>> authority.log.search(kind="policy")[0]["kind"]
'policy'
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.datasets import DatasetPolicy
from policies.engine import Decision, PolicyEngine
from policies.errors import BudgetExceededError, InvalidRequestError
from policies.grants import Grant
from policies.keys import load_or_create_signing_key
from policies.ledger import BudgetLedger, Remaining, Reservation, dataset_account, grant_account
from policies.log import TransparencyLog
from policies.registry import Registry
from policies.requests import Request
from policies.treehead import SignedTreeHead


def release_digest(released: bytes) -> str:
    """SHA-256 hex digest of exactly what was released (the bytes sent to the firm)."""
    return hashlib.sha256(released).hexdigest()


class Authority:
    """Grants, the engine, the ledger and the log over one state directory.

    Files: ``grants.db``, ``ledger.db``, ``log.db`` and ``keys/`` (Ed25519 signing key).
    """

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key = load_or_create_signing_key(self.state_dir / "keys")
        self.public_key: Ed25519PublicKey = key.public_key()
        self.registry = Registry(self.state_dir / "grants.db")
        self.ledger = BudgetLedger(self.state_dir / "ledger.db")
        self.log = TransparencyLog(self.state_dir / "log.db", key, clock)
        self.engine = PolicyEngine(self.registry, self.ledger, clock=clock)
        self._record_policy()

    def _record_policy(self) -> None:
        """Log the Cedar rules whenever they differ from the last ones logged."""
        logged = self.log.search(kind="policy", limit=1, newest_first=True)
        if not logged or logged[0]["digest"] != self.engine.policy_digest:
            self.log.append(
                "policy", {"digest": self.engine.policy_digest, "rules": self.engine.rules}
            )

    # -- datasets and grants --------------------------------------------------------------

    def register_dataset(self, policy: DatasetPolicy) -> DatasetPolicy:
        """Register (or update) a dataset's classification, identity columns and budget cap."""
        stored = self.registry.put_dataset(policy)
        self.ledger.open_account(
            dataset_account(stored.dataset_id), stored.epsilon_cap, stored.delta_cap
        )
        self.log.append(
            "dataset", {"dataset": stored.dataset_id, "policy": stored.model_dump(mode="json")}
        )
        return stored

    def create_grant(self, grant: Grant) -> Grant:
        """Store a new grant, open its budget accounts and log it."""
        for name in grant.datasets:
            self.registry.dataset(name)  # raises if a dataset is not registered
        stored = self.registry.create_grant(grant)
        for name, terms in stored.datasets.items():
            self.ledger.open_account(
                grant_account(stored.grant_id, name), terms.epsilon, terms.delta
            )
        self.log.append(
            "grant",
            {
                "grant_id": stored.grant_id,
                "firm": stored.firm,
                "grant": stored.model_dump(mode="json"),
            },
        )
        return stored

    def revoke_grant(self, grant_id: str, revoked_by: str, reason: str) -> Grant:
        """Revoke a grant (a new version, and a log entry); later requests under it are denied."""
        stored = self.registry.revoke_grant(grant_id, revoked_by, reason)
        self.log.append(
            "revocation",
            {
                "grant_id": grant_id,
                "firm": stored.firm,
                "version": stored.version,
                "revoked_by": revoked_by,
                "reason": reason,
            },
        )
        return stored

    # -- uses -----------------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Decide a request and log the request and the decision (one durable write)."""
        decision = replace(self.engine.decide(request), request_digest=request.digest())
        common = {
            "firm": request.firm,
            "dataset": request.dataset,
            "request_digest": decision.request_digest,
        }
        _, index = self.log.append_many(
            [
                ("request", {**common, "request": request.model_dump(mode="json")}),
                ("decision", {**common, **decision.to_json()}),
            ]
        )
        return replace(decision, log_index=index)

    def reserve(self, decision: Decision) -> Reservation:
        """Reserve the permitted loss on the grant's and the dataset's accounts, and log it."""
        if not decision.permit or decision.obligations is None:
            raise InvalidRequestError("only a permit can be reserved; this decision is a deny")
        ob = decision.obligations
        fields = {"firm": ob.firm, "dataset": ob.dataset, "grant_id": ob.grant_id}
        try:
            reservation = self.ledger.reserve(ob.grant_id, ob.dataset, ob.firm, ob.loss)
        except BudgetExceededError as exc:
            self.log.append("reservation", {**fields, "status": "refused", "reason": str(exc)})
            raise
        self.log.append(
            "reservation",
            {
                **fields,
                "status": "reserved",
                "reservation_id": reservation.reservation_id,
                "epsilon": reservation.epsilon,
                "delta": reservation.delta,
                "rho": reservation.rho,
                "request_digest": decision.request_digest,
            },
        )
        return reservation

    def commit(self, reservation: Reservation, released: bytes) -> int:
        """Charge the reservation for good and log the release with its digest; return the index.

        Call this before handing ``released`` to the firm.
        """
        digest = release_digest(released)
        done = self.ledger.commit(reservation.reservation_id, digest)
        return self.log.append(
            "release",
            {
                "firm": done.firm,
                "dataset": done.dataset,
                "grant_id": done.grant_id,
                "reservation_id": done.reservation_id,
                "release_sha256": digest,
                "epsilon": done.epsilon,
                "delta": done.delta,
                "rho": done.rho,
            },
        )

    def refund(self, reservation: Reservation) -> int:
        """Give the budget back (only if nothing was released) and log it; return the index."""
        done = self.ledger.refund(reservation.reservation_id)
        return self.log.append(
            "refund",
            {
                "firm": done.firm,
                "dataset": done.dataset,
                "grant_id": done.grant_id,
                "reservation_id": done.reservation_id,
            },
        )

    def remaining(self, grant_id: str, dataset: str) -> Remaining:
        return self.ledger.remaining(grant_id, dataset)

    # -- the record -----------------------------------------------------------------------

    def tree_head(self) -> SignedTreeHead:
        """Sign and return a tree head for the log as it is now."""
        return self.log.sign_tree_head()

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.log.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return self.log.consistency_proof(first, second)

    def export(self, path: Path) -> SignedTreeHead:
        return self.log.export(path)
