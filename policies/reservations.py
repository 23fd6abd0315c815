"""Reserve, commit, withhold and refund a decision's loss, each in one transaction with its
log entry (so no budget change is ever without its record, nor a record without its change).

A reservation is made only from a permit the authority issued (looked up by its secret
``decision_id``, used once), for the loss stored with it or a smaller one the caller will
actually spend. A revocation wins: reserve and commit read the grant inside their own
transaction. :class:`policies.Authority` exposes these as ``reserve``, ``commit`` and
``refund``; :mod:`policies.use` runs them in order around a use.

>>> release_digest(b"released")[:16]
'd29eae1372c39624'
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from policies.db import Database
from policies.decision import Decision
from policies.errors import (
    BudgetExceededError,
    DecisionError,
    GrantRevokedError,
    InvalidRequestError,
    ReservationStateError,
)
from policies.ledger import BudgetLedger, Reservation, ReservationState, check_digest
from policies.log import TransparencyLog
from policies.loss import LossUnits, PrivacyLoss, units_fit
from policies.registry import Registry, UnreadableGrant


def release_digest(released: bytes) -> str:
    """SHA-256 hex digest of exactly what was released (the bytes sent to the firm)."""
    return hashlib.sha256(released).hexdigest()


def decision_ref(decision_id: str) -> str:
    """What the log records of a decision id: its SHA-256 (the id itself stays secret)."""
    return hashlib.sha256(decision_id.encode()).hexdigest()


@dataclass(frozen=True)
class Books:
    """The stores a use changes, all in one database: grants, budgets and the log."""

    db: Database
    registry: Registry
    ledger: BudgetLedger
    log: TransparencyLog
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def grant_problem(books: Books, conn: sqlite3.Connection, grant_id: str) -> str | None:
    """Why the grant may no longer be used (read inside the caller's transaction)."""
    return _grant_state(books, conn, grant_id)[0]


def _grant_state(
    books: Books, conn: sqlite3.Connection, grant_id: str
) -> tuple[str | None, str | None]:
    """Why the grant may no longer be used (or ``None``), and its purpose (if readable): every
    use of a grant is for the grant's purpose, so its entries name it for the regulator."""
    try:
        grant = books.registry.grant_record(grant_id, conn)
    except InvalidRequestError as exc:
        return str(exc), None
    purpose = None if isinstance(grant, UnreadableGrant) else grant.purpose
    if grant.revoked:
        why = f"grant {grant_id} was revoked by {grant.revoked_by}: {grant.revoked_reason}"
        return why, purpose
    if isinstance(grant, UnreadableGrant):
        return f"grant {grant_id} cannot be read ({grant.problem})", None
    return None, purpose


def _units_json(units: LossUnits | tuple[int, int, int | None]) -> dict[str, int | None]:
    return {"epsilon": units[0], "delta": units[1], "rho": units[2]}


def reserve(books: Books, decision: Decision, spend: PrivacyLoss | None = None) -> Reservation:
    """Reserve the loss of a permit issued by the authority, once, and log it.

    The firm, grant, dataset and decided loss are the ones stored when the decision was
    issued. ``spend`` (default: the decided loss) is what is charged; it must fit within the
    decided loss (same composition rule, no unit larger), else :class:`InvalidRequestError`
    and nothing is charged or consumed.
    """
    if not isinstance(decision, Decision) or not decision.permit:
        raise InvalidRequestError("only a permit can be reserved; this decision is a deny")
    if not isinstance(decision.decision_id, str) or not decision.decision_id:
        raise DecisionError(
            "this decision was not issued by the authority (it has no decision id); "
            "call Authority.decide and reserve what it returns"
        )
    error: Exception | None = None
    reservation = None
    with books.db.transaction() as conn:
        row = conn.execute(
            "SELECT firm, grant_id, dataset, eps, delta, rho, plan_digest, request_digest, "
            "used_ms, reservation_id FROM decisions WHERE decision_id = ?",
            (decision.decision_id,),
        ).fetchone()
        if row is None:
            raise DecisionError(
                "this decision was not issued by the authority; call Authority.decide and "
                "reserve what it returns"
            )
        firm, grant_id, dataset, eps, delta, rho, plan, request_digest, used, prior = row
        if used is not None:
            raise DecisionError(
                f"this decision was already used (reservation {prior}); a decision is "
                "good for one reservation: decide again"
            )
        decided = LossUnits(eps, delta, rho)
        units = decided if spend is None else spend.units
        if spend is not None and not units_fit(units, decided):
            raise InvalidRequestError(
                f"the loss to reserve {_units_json(units)} exceeds the decided loss "
                f"{_units_json(decided)} (micro-epsilon, femto-delta, nano-rho); decide again "
                "for the larger loss"
            )
        fields: dict[str, Any] = {
            "firm": firm,
            "dataset": dataset,
            "grant_id": grant_id,
            "decision_ref": decision_ref(decision.decision_id),
            "request_digest": request_digest,
            "plan_digest": plan,
        }
        problem, purpose = _grant_state(books, conn, grant_id)
        if purpose is not None:
            fields["purpose"] = purpose
        if problem is None:
            try:
                reservation = books.ledger.reserve_units(conn, grant_id, dataset, firm, units)
            except BudgetExceededError as exc:
                error = exc
                fields.update(status="refused", reason=str(exc))
        else:
            error = GrantRevokedError(f"{problem}; nothing was reserved")
            fields.update(status="refused", reason=problem)
        if reservation is not None:
            fields.update(
                status="reserved",
                reservation_id=reservation.reservation_id,
                epsilon=reservation.epsilon,
                delta=reservation.delta,
                rho=reservation.rho,
                units=_units_json(units),
                decided_units=_units_json(decided),
            )
        conn.execute(
            "UPDATE decisions SET used_ms = ?, reservation_id = ? WHERE decision_id = ?",
            (
                books.now_ms(),
                None if reservation is None else reservation.reservation_id,
                decision.decision_id,
            ),
        )
        books.log.append_in(conn, [("reservation", fields)])
    if error is not None:
        raise error
    assert reservation is not None
    return reservation


def commit(books: Books, reservation: Reservation, released: bytes) -> int:
    """Charge the reservation for good and log the release with its digest; return the index.

    If the grant was revoked since the decision, nothing may be released: the reservation
    stays charged (the mechanism may have run), a ``withheld`` entry is logged and
    :class:`GrantRevokedError` is raised.
    """
    if not isinstance(released, bytes | bytearray):
        raise InvalidRequestError("released must be the bytes handed to the firm")
    digest = check_digest(release_digest(bytes(released)))
    rid = reservation_id(reservation)
    error: Exception | None = None
    with books.db.transaction() as conn:
        current = books.ledger.reservation(rid, conn)
        if current.state != ReservationState.RESERVED:
            raise ReservationStateError(
                f"reservation {rid} is already {current.state}; it cannot be released"
            )
        fields: dict[str, Any] = {
            "firm": current.firm,
            "dataset": current.dataset,
            "grant_id": current.grant_id,
            "reservation_id": rid,
            "epsilon": current.epsilon,
            "delta": current.delta,
            "rho": current.rho,
        }
        problem, purpose = _grant_state(books, conn, current.grant_id)
        if purpose is not None:
            fields["purpose"] = purpose
        if problem is None:
            books.ledger.resolve(conn, rid, ReservationState.COMMITTED, digest)
            entry = ("release", {**fields, "release_sha256": digest})
        else:
            books.ledger.resolve(conn, rid, ReservationState.WITHHELD)
            entry = ("withheld", {**fields, "reason": problem, "result_sha256": digest})
            error = GrantRevokedError(
                f"{problem}; the result must not be handed out (its budget stays charged)"
            )
        (index,) = books.log.append_in(conn, [entry])
    if error is not None:
        raise error
    return index


def refund(books: Books, reservation: Reservation) -> int:
    """Give the budget back (only if nothing was released) and log it; return the index."""
    rid = reservation_id(reservation)
    with books.db.transaction() as conn:
        done = books.ledger.refund(rid, conn)
        fields = {
            "firm": done.firm,
            "dataset": done.dataset,
            "grant_id": done.grant_id,
            "reservation_id": done.reservation_id,
        }
        (index,) = books.log.append_in(conn, [("refund", fields)])
    return index


def reservation_id(reservation: Reservation) -> str:
    """The id of a reservation the authority returned (``ReservationStateError`` if not one)."""
    rid = getattr(reservation, "reservation_id", None)
    if not isinstance(rid, str) or not rid:
        raise ReservationStateError("not a reservation returned by Authority.reserve")
    return rid
