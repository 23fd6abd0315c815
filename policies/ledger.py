"""The privacy-budget ledger: durable accounts, reserve -> commit | withhold | refund (SQLite).

Each use is charged to two accounts at once: the grant's account for that dataset and the
dataset-wide account (a cap across all firms, set by the department). An account is keyed by
separate columns (scope, grant id, dataset), so no grant id or dataset name can make two
accounts one. A reservation is made in one ``BEGIN IMMEDIATE`` transaction that checks both
caps, so concurrent threads and processes never overspend. A reservation stays charged until
it is refunded; one that is never resolved (the process died) stays charged forever, so a
crash can never let a release go uncharged. A reservation whose result may not be handed out
(its grant was revoked after the mechanism ran) is ``withheld``: charged, nothing released.

Amounts are stored as integers (micro-epsilon, femto-delta, nano-rho), rounded up when
charged and down when used as caps. Every method that changes the ledger can run inside a
caller's transaction (``conn=``), which is how the authority writes a change and its log
entry atomically.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from policies.bounds import check_delta, check_epsilon, check_rho
from policies.composition import Loss, zcdp_to_epsilon
from policies.db import Database, open_database
from policies.errors import (
    BudgetExceededError,
    InvalidRequestError,
    LedgerMismatchError,
    PrivacyParameterError,
    ReservationStateError,
)

EPS_UNITS = 1_000_000  # micro-epsilon
DELTA_UNITS = 10**15  # femto-delta
RHO_UNITS = 10**9  # nano-rho

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    scope TEXT NOT NULL, grant_id TEXT NOT NULL, dataset TEXT NOT NULL,
    eps_cap INTEGER NOT NULL, delta_cap INTEGER NOT NULL,
    basic_eps INTEGER NOT NULL DEFAULT 0, basic_delta INTEGER NOT NULL DEFAULT 0,
    rho INTEGER NOT NULL DEFAULT 0, zcdp_delta INTEGER NOT NULL DEFAULT 0,
    n_reserved INTEGER NOT NULL DEFAULT 0, n_committed INTEGER NOT NULL DEFAULT 0,
    n_refunded INTEGER NOT NULL DEFAULT 0, n_withheld INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, grant_id, dataset));
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, grant_id TEXT NOT NULL, dataset TEXT NOT NULL,
    firm TEXT NOT NULL, eps INTEGER NOT NULL, delta INTEGER NOT NULL, rho INTEGER,
    state TEXT NOT NULL, created_ms INTEGER NOT NULL, resolved_ms INTEGER,
    release_digest TEXT);
CREATE INDEX IF NOT EXISTS reservations_grant ON reservations (grant_id, dataset)
"""

_ACCOUNT_COLUMNS = (
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


def charge_units(value: float, units: int) -> int:
    """An amount in the ledger's integer units, rounded up (as charged)."""
    return math.ceil(value * units - 1e-6)


def cap_units(value: float, units: int) -> int:
    """A cap in the ledger's integer units, rounded down."""
    return math.floor(value * units + 1e-6)


def spent_units(basic_eps: int, basic_delta: int, rho: int, zcdp_delta: int) -> tuple[int, int]:
    """(epsilon, delta) units spent by an account, composing both rules."""
    eps = basic_eps
    if rho:
        eps += charge_units(zcdp_to_epsilon(rho / RHO_UNITS, zcdp_delta / DELTA_UNITS), EPS_UNITS)
    return eps, basic_delta + zcdp_delta


def _spent(row: tuple) -> tuple[int, int]:
    """(epsilon, delta) units spent by an account row (label, caps, four sums, counts)."""
    return spent_units(row[3], row[4], row[5], row[6])


def loss_units(loss: Loss) -> tuple[int, int, int | None]:
    """``loss`` in integer units (epsilon, delta, rho or None); refuse what cannot be charged.

    A basic loss needs epsilon of at least :data:`policies.bounds.EPSILON_MIN` (a smaller one
    would round to a charge of one unit at most, hiding what was asked); a zCDP loss needs
    rho of at least one nano-rho and a delta > 0 to convert it.
    """
    try:
        if loss.rho is None:
            eps = charge_units(check_epsilon(loss.epsilon), EPS_UNITS)
            delta = charge_units(check_delta(loss.delta), DELTA_UNITS)
            return eps, delta, None
        rho = charge_units(check_rho(loss.rho), RHO_UNITS)
        delta = check_delta(loss.delta)
        declared = loss.epsilon  # informational for a zCDP loss: the account converts rho
        if declared != 0:
            declared = check_epsilon(declared)
    except PrivacyParameterError as exc:
        raise PrivacyParameterError(f"invalid privacy loss: {exc}") from None
    if delta <= 0:
        raise PrivacyParameterError(
            "invalid privacy loss: a zCDP (Gaussian) loss needs delta > 0 to convert it"
        )
    return charge_units(declared, EPS_UNITS), charge_units(delta, DELTA_UNITS), rho


def _account_row(raw: tuple) -> tuple:
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
class _Accounts:
    """A grant's and its dataset's account rows, with the room both leave for a use charged
    under basic composition (which adds to what is spent, so room = min(cap - spent))."""

    rows: tuple[tuple, tuple]
    eps_room: int
    delta_room: int

    @staticmethod
    def of(rows: tuple[tuple, tuple]) -> _Accounts:
        spent = [_spent(row) for row in rows]
        return _Accounts(
            rows,
            min(row[1] - eps for row, (eps, _) in zip(rows, spent, strict=True)),
            min(row[2] - delta for row, (_, delta) in zip(rows, spent, strict=True)),
        )


class BudgetLedger:
    """Durable privacy-budget accounts in SQLite, safe across threads and processes.

    ``target`` is a database file or a shared :class:`policies.db.Database`.
    """

    def __init__(self, target: Path | Database) -> None:
        self.db = open_database(target)
        self.path = self.db.path
        self.db.script(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return self.db.conn()

    def _cached_accounts(self, grant_id: str, dataset: str) -> _Accounts:
        """Account rows for a read-only check, re-read only when the file changed.

        The database's version moves whenever any connection (thread or process) commits,
        this thread's own commits included. So a check costs one statement on this thread's
        connection while nothing changed, and never sees a stale balance.
        """
        version = self.db.version()
        local = self.db._local
        cache = getattr(local, "ledger_cache", None)
        if cache is None or local.ledger_cache_version != version:
            cache = local.ledger_cache = {}
            local.ledger_cache_version = version
        key = (grant_id, dataset)
        accounts = cache.get(key)
        if accounts is None:
            accounts = cache[key] = _Accounts.of(self._accounts(local.conn, grant_id, dataset))
        return accounts

    # -- accounts -------------------------------------------------------------------------

    def open_account(
        self,
        account: AccountKey,
        epsilon: float,
        delta: float,
        conn: sqlite3.Connection | None = None,
    ) -> tuple[int, int]:
        """Create an account or change its caps (a cap below what is spent blocks new uses).

        Returns the caps in integer units (micro-epsilon, femto-delta).
        """
        if not isinstance(account, AccountKey):
            raise InvalidRequestError(
                "name an account with grant_account(grant_id, dataset) or dataset_account(dataset)"
            )
        try:
            caps = (
                cap_units(check_epsilon(epsilon, "epsilon cap"), EPS_UNITS),
                cap_units(check_delta(delta, "delta cap"), DELTA_UNITS),
            )
        except PrivacyParameterError as exc:
            raise PrivacyParameterError(f"account {account}: {exc}") from None
        sql = (
            "INSERT INTO accounts (scope, grant_id, dataset, eps_cap, delta_cap) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, grant_id, dataset) DO UPDATE SET "
            "eps_cap = excluded.eps_cap, delta_cap = excluded.delta_cap"
        )
        if conn is not None:
            conn.execute(sql, (*account, *caps))
        else:
            with self.db.transaction() as own:
                own.execute(sql, (*account, *caps))
        return caps

    def _accounts(
        self, conn: sqlite3.Connection, grant_id: str, dataset: str
    ) -> tuple[tuple, tuple]:
        rows = {}
        for raw in conn.execute(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE dataset = ? AND "
            "((scope = 'grant' AND grant_id = ?) OR (scope = 'dataset' AND grant_id = ''))",
            (dataset, grant_id),
        ):
            rows[raw[0]] = _account_row(raw)
        if "grant" not in rows:
            raise InvalidRequestError(
                f"no budget account for grant {grant_id!r} on dataset {dataset!r}; "
                "create the grant through the authority first"
            )
        if "dataset" not in rows:
            raise InvalidRequestError(
                f"dataset {dataset!r} has no dataset-wide budget; its department must register it"
            )
        return rows["grant"], rows["dataset"]

    @staticmethod
    def _units(loss: Loss) -> tuple[int, int, int | None]:
        return loss_units(loss)

    @staticmethod
    def _after(row: tuple, eps: int, delta: int, rho: int | None) -> tuple:
        account, eps_cap, delta_cap, b_eps, b_delta, r, z_delta, *rest = row
        if rho is None:
            return (account, eps_cap, delta_cap, b_eps + eps, b_delta + delta, r, z_delta, *rest)
        return (account, eps_cap, delta_cap, b_eps, b_delta, r + rho, z_delta + delta, *rest)

    def _shortfall(
        self, rows: tuple[tuple, tuple], eps: int, delta: int, rho: int | None
    ) -> str | None:
        for row in rows:
            new_eps, new_delta = _spent(self._after(row, eps, delta, rho))
            if new_eps <= row[1] and new_delta <= row[2]:
                continue
            old_eps, old_delta = _spent(row)
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

    def check(self, grant_id: str, dataset: str, loss: Loss) -> str | None:
        """Read-only: why ``loss`` would not fit now, or ``None`` if it would."""
        eps, delta, rho = loss_units(loss)
        accounts = self._cached_accounts(grant_id, dataset)
        if rho is None and eps <= accounts.eps_room and delta <= accounts.delta_room:
            return None  # basic composition adds up: what _shortfall would find, sooner
        return self._shortfall(accounts.rows, eps, delta, rho)

    # -- reserve / commit / refund --------------------------------------------------------

    def reserve(
        self,
        grant_id: str,
        dataset: str,
        firm: str,
        loss: Loss,
        conn: sqlite3.Connection | None = None,
    ) -> Reservation:
        """Charge ``loss`` to the grant's and dataset's accounts, or raise and charge nothing."""
        units = loss_units(loss)
        if conn is None:
            with self.db.transaction() as own:
                return self.reserve_units(own, grant_id, dataset, firm, units)
        return self.reserve_units(conn, grant_id, dataset, firm, units)

    def reserve_units(
        self,
        conn: sqlite3.Connection,
        grant_id: str,
        dataset: str,
        firm: str,
        units: tuple[int, int, int | None],
    ) -> Reservation:
        """Inside the caller's write transaction: charge ``units`` (epsilon, delta, rho)."""
        eps, delta, rho = units
        now = int(time.time() * 1000)
        rid = uuid.uuid4().hex
        rows = self._accounts(conn, grant_id, dataset)
        short = self._shortfall(rows, eps, delta, rho)
        if short is not None:
            raise BudgetExceededError(short)
        conn.execute(
            "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', ?, NULL, NULL)",
            (rid, grant_id, dataset, firm, eps, delta, rho, now),
        )
        if rho is None:
            update = "basic_eps = basic_eps + ?, basic_delta = basic_delta + ?"
            amounts: tuple[int, int] = (eps, delta)
        else:
            update = "rho = rho + ?, zcdp_delta = zcdp_delta + ?"
            amounts = (rho, delta)
        self._update_both(
            conn, f"{update}, n_reserved = n_reserved + 1", amounts, grant_id, dataset
        )
        return Reservation(
            rid,
            grant_id,
            dataset,
            firm,
            eps / EPS_UNITS,
            delta / DELTA_UNITS,
            None if rho is None else rho / RHO_UNITS,
            ReservationState.RESERVED,
            now,
        )

    @staticmethod
    def _update_both(
        conn: sqlite3.Connection, assignments: str, args: tuple, grant_id: str, dataset: str
    ) -> None:
        cur = conn.execute(
            f"UPDATE accounts SET {assignments} WHERE dataset = ? AND "
            "((scope = 'grant' AND grant_id = ?) OR (scope = 'dataset' AND grant_id = ''))",
            (*args, dataset, grant_id),
        )
        if cur.rowcount != 2:
            raise LedgerMismatchError(
                f"the budget accounts of grant {grant_id!r} on dataset {dataset!r} are missing; "
                "the ledger was edited outside the authority"
            )

    def _row(self, conn: sqlite3.Connection, reservation_id: str) -> tuple:
        row = conn.execute(
            "SELECT * FROM reservations WHERE reservation_id = ?", (reservation_id,)
        ).fetchone()
        if row is None:
            raise ReservationStateError(f"no reservation {reservation_id!r}")
        return row

    def resolve(
        self,
        conn: sqlite3.Connection,
        reservation_id: str,
        state: ReservationState,
        digest: str | None = None,
    ) -> Reservation:
        """Inside the caller's write transaction: move a reserved reservation to ``state``."""
        row = self._row(conn, reservation_id)
        if row[7] != ReservationState.RESERVED:
            raise ReservationStateError(
                f"reservation {reservation_id} is already {row[7]}; it cannot be {state} again"
            )
        now = int(time.time() * 1000)
        conn.execute(
            "UPDATE reservations SET state = ?, resolved_ms = ?, release_digest = ? "
            "WHERE reservation_id = ?",
            (str(state), now, digest, reservation_id),
        )
        grant_id, dataset, eps, delta, rho = row[1], row[2], row[4], row[5], row[6]
        if state == ReservationState.COMMITTED:
            self._update_both(
                conn, "n_reserved = n_reserved - 1, n_committed = n_committed + 1", (),
                grant_id, dataset,
            )  # fmt: skip
        elif state == ReservationState.WITHHELD:
            self._update_both(
                conn, "n_reserved = n_reserved - 1, n_withheld = n_withheld + 1", (),
                grant_id, dataset,
            )  # fmt: skip
        elif rho is None:
            self._update_both(
                conn,
                "basic_eps = basic_eps - ?, basic_delta = basic_delta - ?, "
                "n_reserved = n_reserved - 1, n_refunded = n_refunded + 1",
                (eps, delta),
                grant_id,
                dataset,
            )
        else:
            self._update_both(
                conn,
                "rho = rho - ?, zcdp_delta = zcdp_delta - ?, "
                "n_reserved = n_reserved - 1, n_refunded = n_refunded + 1",
                (rho, delta),
                grant_id,
                dataset,
            )
        return _reservation((*row[:7], str(state), row[8], now, digest))

    def _resolve_own(
        self, reservation_id: str, state: ReservationState, digest: str | None
    ) -> Reservation:
        with self.db.transaction() as conn:
            return self.resolve(conn, reservation_id, state, digest)

    def commit(
        self, reservation_id: str, release_digest: str, conn: sqlite3.Connection | None = None
    ) -> Reservation:
        """Mark a reservation released; ``release_digest`` is the SHA-256 hex of the release."""
        check_digest(release_digest)
        if conn is not None:
            return self.resolve(conn, reservation_id, ReservationState.COMMITTED, release_digest)
        return self._resolve_own(reservation_id, ReservationState.COMMITTED, release_digest)

    def refund(self, reservation_id: str, conn: sqlite3.Connection | None = None) -> Reservation:
        """Give back a reservation's budget. Only call this if nothing was released."""
        if conn is not None:
            return self.resolve(conn, reservation_id, ReservationState.REFUNDED)
        return self._resolve_own(reservation_id, ReservationState.REFUNDED, None)

    def reservation(
        self, reservation_id: str, conn: sqlite3.Connection | None = None
    ) -> Reservation:
        return _reservation(self._row(conn or self._conn(), reservation_id))

    def reservations(self, grant_id: str | None = None) -> list[Reservation]:
        sql, args = "SELECT * FROM reservations", ()
        if grant_id is not None:
            sql, args = sql + " WHERE grant_id = ?", (grant_id,)
        return [_reservation(r) for r in self._conn().execute(sql + " ORDER BY created_ms", args)]

    # -- reporting ------------------------------------------------------------------------

    def account(self, account: AccountKey) -> AccountStatus:
        if not isinstance(account, AccountKey):
            raise InvalidRequestError("name an account with grant_account() or dataset_account()")
        raw = (
            self._conn()
            .execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts "
                "WHERE scope = ? AND grant_id = ? AND dataset = ?",
                tuple(account),
            )
            .fetchone()
        )
        if raw is None:
            raise InvalidRequestError(f"no budget account {account}")
        return _status(_account_row(raw))

    def remaining(self, grant_id: str, dataset: str) -> Remaining:
        """What the grant may still spend on ``dataset``, the tighter of both accounts, and why."""
        g, d = (_status(r) for r in self._accounts(self._conn(), grant_id, dataset))
        return Remaining(min(g.epsilon_left, d.epsilon_left), min(g.delta_left, d.delta_left), g, d)

    def snapshot(self, conn: sqlite3.Connection | None = None) -> LedgerState:
        """Every account and reservation as stored (to compare with the log's replay)."""
        return self.read_snapshot(conn or self._conn())

    @staticmethod
    def read_snapshot(conn: sqlite3.Connection) -> LedgerState:
        """:meth:`snapshot` on any connection to a ledger database."""
        state = LedgerState()
        for raw in conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts"):
            state.accounts[AccountKey(*raw[:3])] = tuple(raw[3:])
        for row in conn.execute(
            "SELECT reservation_id, grant_id, dataset, firm, eps, delta, rho, state, "
            "release_digest FROM reservations"
        ):
            state.reservations[row[0]] = tuple(row[1:])
        return state

    def audit(self) -> list[str]:
        """Recompute every account from the reservation rows; list any disagreement."""
        stored = self.snapshot()
        recomputed = LedgerState()
        for key, values in stored.accounts.items():
            recomputed.accounts[key] = (*values[:2], *([0] * 8))
        for rid, res in stored.reservations.items():
            try:
                recomputed.apply_reservation(rid, *res[:6])
                if res[6] != ReservationState.RESERVED:
                    recomputed.resolve(rid, str(res[6]), res[7])
            except LedgerMismatchError as exc:
                return [str(exc)]
        problems = [p for p in recomputed.differences(stored) if "reservation" not in p]
        for key, values in stored.accounts.items():
            eps, delta = spent_units(*values[2:6])
            if eps > values[0] or delta > values[1]:
                problems.append(
                    f"{key}: spent ({eps}, {delta}) exceeds cap ({values[0]}, {values[1]})"
                )
        return problems


class LedgerState:
    """Accounts and reservations in integer units, as stored or as the log implies.

    ``accounts[key]`` is ``(eps_cap, delta_cap, basic_eps, basic_delta, rho, zcdp_delta,
    n_reserved, n_committed, n_refunded, n_withheld)``; ``reservations[id]`` is ``(grant_id,
    dataset, firm, eps, delta, rho, state, release_digest)``.
    """

    def __init__(self) -> None:
        self.accounts: dict[AccountKey, tuple] = {}
        self.reservations: dict[str, tuple] = {}

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


def _reservation(row: tuple) -> Reservation:
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


def _status(row: tuple) -> AccountStatus:
    eps, delta = _spent(row)
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
