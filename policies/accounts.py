"""Budget accounts and reservations as values: what the ledger stores, in integer units.

An account is keyed by ``(scope, grant id, dataset)``: a grant's account on one dataset, or
the dataset-wide one. :class:`LedgerState` holds every account and reservation in integer
units (micro-epsilon, femto-delta, nano-rho) and applies the same changes the ledger makes,
which is how the log's replay and the ledger's own audit recompute it.

>>> state = LedgerState()
>>> state.open(grant_account("g", "tax"), 1_000_000, 0)
>>> state.open(dataset_account("tax"), 5_000_000, 0)
>>> state.apply_reservation("r1", "g", "tax", "acme", 250_000, 0, None)
>>> state.resolve("r1", "committed", "ab" * 32)
>>> spent_units(*state.accounts[grant_account("g", "tax")][2:6])
(250000, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from policies.composition import zcdp_to_epsilon
from policies.errors import InvalidRequestError, LedgerMismatchError
from policies.loss import DELTA_UNITS, EPS_UNITS, RHO_UNITS, charge_units

#: A stored account row: ``(AccountKey, eps_cap, delta_cap, basic_eps, basic_delta, rho,
#: zcdp_delta, n_reserved, n_committed, n_refunded, n_withheld)``.
AccountRow = tuple[Any, ...]

#: The columns of an account row, in the order of :data:`AccountRow`.
ACCOUNT_COLUMNS = (
    "scope, grant_id, dataset, eps_cap, delta_cap, basic_eps, basic_delta, rho, zcdp_delta, "
    "n_reserved, n_committed, n_refunded, n_withheld"
)


class AccountKey(NamedTuple):
    """An account: ``("grant", grant_id, dataset)`` or ``("dataset", "", dataset)``.

    Its text form (``grant:<grant>:<dataset>``) is for people; the ledger stores the three
    parts in separate columns.
    """

    scope: str
    grant_id: str
    dataset: str

    def __str__(self) -> str:
        if self.scope == "dataset":
            return f"dataset:{self.dataset}"
        return f"grant:{self.grant_id}:{self.dataset}"


class ReservationState(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    REFUNDED = "refunded"
    WITHHELD = "withheld"  # charged, but the result may not be handed out (grant revoked)


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    grant_id: str
    dataset: str
    firm: str
    epsilon: float
    delta: float
    rho: float | None
    state: ReservationState
    created_ms: int
    release_digest: str | None = None


@dataclass(frozen=True)
class AccountStatus:
    """Caps, what is spent (by which composition rule) and how many uses did it."""

    account: str
    epsilon_cap: float
    delta_cap: float
    epsilon_spent: float
    delta_spent: float
    basic_epsilon: float
    rho: float
    pending: int
    committed: int
    refunded: int
    withheld: int = 0

    @property
    def epsilon_left(self) -> float:
        return max(0.0, self.epsilon_cap - self.epsilon_spent)

    @property
    def delta_left(self) -> float:
        return max(0.0, self.delta_cap - self.delta_spent)

    def explain(self) -> str:
        withheld = f", {self.withheld} withheld (charged)" if self.withheld else ""
        return (
            f"{self.account}: spent epsilon {self.epsilon_spent:.6g} of {self.epsilon_cap:.6g} "
            f"(basic composition {self.basic_epsilon:.6g} + zCDP rho {self.rho:.6g}), "
            f"delta {self.delta_spent:.3g} of {self.delta_cap:.3g}; "
            f"{self.committed} released, {self.pending} pending (charged), "
            f"{self.refunded} refunded{withheld}"
        )


@dataclass(frozen=True)
class Remaining:
    epsilon: float
    delta: float
    grant: AccountStatus
    dataset: AccountStatus

    def explain(self) -> str:
        return f"{self.grant.explain()}\n{self.dataset.explain()}"


def grant_account(grant_id: str, dataset: str) -> AccountKey:
    return AccountKey("grant", grant_id, dataset)


def dataset_account(dataset: str) -> AccountKey:
    return AccountKey("dataset", "", dataset)


def spent_units(basic_eps: int, basic_delta: int, rho: int, zcdp_delta: int) -> tuple[int, int]:
    """(epsilon, delta) units spent by an account, composing both rules."""
    eps = basic_eps
    if rho:
        eps += charge_units(zcdp_to_epsilon(rho / RHO_UNITS, zcdp_delta / DELTA_UNITS), EPS_UNITS)
    return eps, basic_delta + zcdp_delta


def row_spent(row: AccountRow) -> tuple[int, int]:
    """(epsilon, delta) units spent by an account row (label, caps, four sums, counts)."""
    return spent_units(row[3], row[4], row[5], row[6])


def account_row(raw: tuple[Any, ...]) -> AccountRow:
    """``(AccountKey, eps_cap, delta_cap, basic_eps, basic_delta, rho, zcdp_delta, counts...)``
    from a stored row; an unreadable row (not integers, negative) is refused."""
    key = AccountKey(raw[0], raw[1], raw[2])
    values = raw[3:]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise LedgerMismatchError(
            f"budget account {key} holds unreadable amounts; the ledger was edited outside "
            "the authority: run `sandbox audit check` and restore the state from a backup"
        )
    return (key, *values)


@dataclass(frozen=True)
class Room:
    """A grant's and its dataset's account rows, with the room both leave for a use charged
    under basic composition (which adds to what is spent, so room = min(cap - spent))."""

    rows: tuple[AccountRow, AccountRow]
    eps_room: int
    delta_room: int

    @staticmethod
    def of(rows: tuple[AccountRow, AccountRow]) -> Room:
        spent = [row_spent(row) for row in rows]
        return Room(
            rows,
            min(row[1] - eps for row, (eps, _) in zip(rows, spent, strict=True)),
            min(row[2] - delta for row, (_, delta) in zip(rows, spent, strict=True)),
        )


def _after(row: AccountRow, eps: int, delta: int, rho: int | None) -> AccountRow:
    account, eps_cap, delta_cap, b_eps, b_delta, r, z_delta, *rest = row
    if rho is None:
        return (account, eps_cap, delta_cap, b_eps + eps, b_delta + delta, r, z_delta, *rest)
    return (account, eps_cap, delta_cap, b_eps, b_delta, r + rho, z_delta + delta, *rest)


def shortfall(
    rows: tuple[AccountRow, AccountRow], eps: int, delta: int, rho: int | None
) -> str | None:
    """Why charging ``(eps, delta, rho)`` units would take one of ``rows`` past its cap."""
    for row in rows:
        new_eps, new_delta = row_spent(_after(row, eps, delta, rho))
        if new_eps <= row[1] and new_delta <= row[2]:
            continue
        old_eps, old_delta = row_spent(row)
        if new_eps > row[1]:
            return (
                f"{row[0]} has epsilon {max(0, row[1] - old_eps) / EPS_UNITS:.6g} left of "
                f"{row[1] / EPS_UNITS:.6g}; this use needs "
                f"{(new_eps - old_eps) / EPS_UNITS:.6g}"
            )
        if new_delta > row[2]:
            return (
                f"{row[0]} has delta {max(0, row[2] - old_delta) / DELTA_UNITS:.3g} left of "
                f"{row[2] / DELTA_UNITS:.3g}; this use needs "
                f"{(new_delta - old_delta) / DELTA_UNITS:.3g}"
            )
    return None


class LedgerState:
    """Accounts and reservations in integer units, as stored or as the log implies.

    ``accounts[key]`` is ``(eps_cap, delta_cap, basic_eps, basic_delta, rho, zcdp_delta,
    n_reserved, n_committed, n_refunded, n_withheld)``; ``reservations[id]`` is ``(grant_id,
    dataset, firm, eps, delta, rho, state, release_digest)``.
    """

    def __init__(self) -> None:
        self.accounts: dict[AccountKey, tuple[int, ...]] = {}
        self.reservations: dict[str, tuple[Any, ...]] = {}

    def open(self, key: AccountKey, eps_cap: int, delta_cap: int) -> None:
        values = self.accounts.get(key, (0,) * 10)
        self.accounts[key] = (eps_cap, delta_cap, *values[2:])

    def _add(self, key: AccountKey, deltas: tuple[int, ...]) -> None:
        values = self.accounts.get(key)
        if values is None:
            raise LedgerMismatchError(f"a reservation charges {key}, which was never opened")
        self.accounts[key] = tuple(v + d for v, d in zip(values, deltas, strict=True))

    def _both(self, grant_id: str, dataset: str, deltas: tuple[int, ...]) -> None:
        self._add(grant_account(grant_id, dataset), deltas)
        self._add(dataset_account(dataset), deltas)

    def apply_reservation(
        self,
        rid: str,
        grant_id: str,
        dataset: str,
        firm: str,
        eps: int,
        delta: int,
        rho: int | None,
    ) -> None:
        if rid in self.reservations:
            raise LedgerMismatchError(f"reservation {rid} is made twice")
        self.reservations[rid] = (grant_id, dataset, firm, eps, delta, rho, "reserved", None)
        if rho is None:
            self._both(grant_id, dataset, (0, 0, eps, delta, 0, 0, 1, 0, 0, 0))
        else:
            self._both(grant_id, dataset, (0, 0, 0, 0, rho, delta, 1, 0, 0, 0))

    def resolve(self, rid: str, state: str, digest: str | None = None) -> None:
        res = self.reservations.get(rid)
        if res is None:
            raise LedgerMismatchError(f"reservation {rid} is {state} but was never made")
        if res[6] != "reserved":
            raise LedgerMismatchError(f"reservation {rid} is {state} after being {res[6]}")
        grant_id, dataset, _, eps, delta, rho = res[:6]
        self.reservations[rid] = (*res[:6], state, digest)
        if state == "committed":
            self._both(grant_id, dataset, (0, 0, 0, 0, 0, 0, -1, 1, 0, 0))
        elif state == "withheld":
            self._both(grant_id, dataset, (0, 0, 0, 0, 0, 0, -1, 0, 0, 1))
        elif state == "refunded":
            if rho is None:
                self._both(grant_id, dataset, (0, 0, -eps, -delta, 0, 0, -1, 0, 1, 0))
            else:
                self._both(grant_id, dataset, (0, 0, 0, 0, -rho, -delta, -1, 0, 1, 0))
        else:
            raise LedgerMismatchError(f"reservation {rid} has an unknown state {state!r}")

    def differences(self, other: LedgerState, limit: int = 5) -> list[str]:
        """What differs between ``self`` (expected) and ``other`` (stored), at most ``limit``."""
        out: list[str] = []
        for key in sorted(set(self.accounts) | set(other.accounts)):
            mine, theirs = self.accounts.get(key), other.accounts.get(key)
            if mine != theirs:
                out.append(f"account {key}: expected {mine}, stored {theirs}")
        for rid in sorted(set(self.reservations) | set(other.reservations)):
            mine, theirs = self.reservations.get(rid), other.reservations.get(rid)
            if mine != theirs:
                out.append(f"reservation {rid}: expected {mine}, stored {theirs}")
        return out[:limit]


def check_digest(release_digest: str) -> str:
    if (
        not isinstance(release_digest, str)
        or len(release_digest) != 64
        or any(c not in "0123456789abcdef" for c in release_digest)
    ):
        raise InvalidRequestError("release_digest must be a lowercase hex SHA-256 digest")
    return release_digest


def reservation_from_row(row: tuple[Any, ...]) -> Reservation:
    rid, grant_id, dataset, firm, eps, delta, rho, state, created, _, digest = row
    return Reservation(
        rid,
        grant_id,
        dataset,
        firm,
        eps / EPS_UNITS,
        delta / DELTA_UNITS,
        None if rho is None else rho / RHO_UNITS,
        ReservationState(state),
        created,
        digest,
    )


def account_status(row: AccountRow) -> AccountStatus:
    eps, delta = row_spent(row)
    return AccountStatus(
        account=str(row[0]),
        epsilon_cap=row[1] / EPS_UNITS,
        delta_cap=row[2] / DELTA_UNITS,
        epsilon_spent=eps / EPS_UNITS,
        delta_spent=delta / DELTA_UNITS,
        basic_epsilon=row[3] / EPS_UNITS,
        rho=row[5] / RHO_UNITS,
        pending=row[7],
        committed=row[8],
        refunded=row[9],
        withheld=row[10],
    )
