"""The governed-use path: every query and every training job goes through :func:`governed_use`
(as :meth:`policies.Authority.use`), after :meth:`policies.Authority.decide` has permitted it.

    decisions (permits) ──reserve──> reservations ──run──> Outcome
        released bytes  ──commit──>  "release" entries (or "withheld" if a grant was revoked)
        nothing released ─refund──>  "refund" entries (only where nothing left under it)

1. Reserve each decision's loss, or the smaller loss the use will really spend (``spend``,
   e.g. what OpenDP calibrated); if one reservation fails, those already made are refunded.
2. ``run(reservations)`` does the work and returns an :class:`Outcome`: the bytes handed to
   the firm, or a failure (it may also raise).
3. On a release, each reservation is committed with the SHA-256 of those bytes. If a grant
   was revoked meanwhile, the commit is refused (``GrantRevokedError``, budget kept, a
   ``withheld`` entry logged) and the value must not be handed out.
4. When nothing was handed out, ``on_failure(reservation, reason)`` says per reservation what
   left anyway: ``None`` (nothing: it is refunded) or the bytes of a record of it (it is
   committed with them, so a partial release is never uncharged).

Each step is one transaction holding the ledger change and its log entry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from policies.decision import Decision
from policies.errors import InvalidRequestError
from policies.ledger import Reservation
from policies.loss import PrivacyLoss

if TYPE_CHECKING:
    from policies.authority import Authority

T = TypeVar("T")

#: Per reservation after a failure: ``None`` if nothing left under it, else a record of what did.
OnFailure = Callable[[Reservation, str], bytes | None]


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a use's ``run`` produced: ``value`` and the exact bytes handed to the firm, or
    ``released=None`` and a ``failure`` reason when nothing is handed out."""

    value: T
    released: bytes | None
    failure: str = "failed"


@dataclass(frozen=True)
class Settled(Generic[T]):
    """A finished use: the run's value, whether it was released, the reservations, and the log
    index of each dataset's ``release`` entry (a release, or a failure that was charged)."""

    value: T
    released: bool
    reservations: tuple[Reservation, ...]
    release_indexes: dict[str, int] = field(default_factory=dict)


def refund_all(reservation: Reservation, reason: str) -> bytes | None:
    """The ``on_failure`` of a use whose failure always means that nothing was released."""
    return None


def governed_use(
    authority: Authority,
    decisions: Sequence[Decision],
    run: Callable[[tuple[Reservation, ...]], Outcome[T]],
    *,
    spend: Sequence[PrivacyLoss] | None = None,
    on_failure: OnFailure = refund_all,
) -> Settled[T]:
    """Reserve, run, then commit or refund, as the module describes; see
    :meth:`policies.Authority.use`."""
    if not decisions:
        raise InvalidRequestError("a use needs at least one permit; call Authority.decide first")
    if spend is not None and len(spend) != len(decisions):
        raise InvalidRequestError("give one loss to spend for each decision, in the same order")
    reservations: list[Reservation] = []
    try:
        for i, decision in enumerate(decisions):
            loss = None if spend is None else spend[i]
            reservations.append(authority.reserve(decision, loss))
    except BaseException:
        for reservation in reservations:
            authority.refund(reservation)
        raise
    reserved = tuple(reservations)
    try:
        outcome = run(reserved)
    except BaseException as exc:
        _settle_failure(authority, reserved, on_failure, type(exc).__name__)
        raise
    if outcome.released is None:
        indexes = _settle_failure(authority, reserved, on_failure, outcome.failure)
        return Settled(outcome.value, False, reserved, indexes)
    released = outcome.released
    indexes = {r.dataset: authority.commit(r, released) for r in reserved}
    return Settled(outcome.value, True, reserved, indexes)


def _settle_failure(
    authority: Authority,
    reservations: tuple[Reservation, ...],
    on_failure: OnFailure,
    reason: str,
) -> dict[str, int]:
    """Refund each reservation under which nothing left; charge the others with the record
    ``on_failure`` gives. Returns the log index of each charged dataset's entry."""
    indexes: dict[str, int] = {}
    for reservation in reservations:
        record = on_failure(reservation, reason)
        if record is None:
            authority.refund(reservation)
        else:
            indexes[reservation.dataset] = authority.commit(reservation, record)
    return indexes
