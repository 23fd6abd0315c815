"""The privacy-budget ledger: durable accounts, reserve -> commit | refund (SQLite, WAL).

Each use is charged to two accounts at once: the grant's account for that dataset and the
dataset-wide account (a cap across all firms, set by the department). A reservation is made
in one ``BEGIN IMMEDIATE`` transaction that checks both caps, so concurrent threads and
processes never overspend. A reservation stays charged until it is refunded; one that is
never resolved (the process died) stays charged forever, so a crash can never let a release
go uncharged. Amounts are stored as integers (micro-epsilon, femto-delta, nano-rho) and are
rounded up when charged and down when used as caps.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from policies.composition import Loss, zcdp_to_epsilon
from policies.db import connect
from policies.errors import (
    BudgetExceededError,
    InvalidRequestError,
    ReservationStateError,
)

EPS_UNITS = 1_000_000  # micro-epsilon
DELTA_UNITS = 10**15  # femto-delta
RHO_UNITS = 10**9  # nano-rho

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    eps_cap INTEGER NOT NULL, delta_cap INTEGER NOT NULL,
    basic_eps INTEGER NOT NULL DEFAULT 0, basic_delta INTEGER NOT NULL DEFAULT 0,
    rho INTEGER NOT NULL DEFAULT 0, zcdp_delta INTEGER NOT NULL DEFAULT 0,
    n_reserved INTEGER NOT NULL DEFAULT 0, n_committed INTEGER NOT NULL DEFAULT 0,
    n_refunded INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, grant_id TEXT NOT NULL, dataset TEXT NOT NULL,
    firm TEXT NOT NULL, eps INTEGER NOT NULL, delta INTEGER NOT NULL, rho INTEGER,
    state TEXT NOT NULL, created_ms INTEGER NOT NULL, resolved_ms INTEGER,
    release_digest TEXT);
CREATE INDEX IF NOT EXISTS reservations_grant ON reservations (grant_id, dataset);
"""


class ReservationState(StrEnum):
    RESERVED = "reserved"
    COMMITTED = "committed"
    REFUNDED = "refunded"


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

    @property
    def epsilon_left(self) -> float:
        return max(0.0, self.epsilon_cap - self.epsilon_spent)

    @property
    def delta_left(self) -> float:
        return max(0.0, self.delta_cap - self.delta_spent)

    def explain(self) -> str:
        return (
            f"{self.account}: spent epsilon {self.epsilon_spent:.6g} of {self.epsilon_cap:.6g} "
            f"(basic composition {self.basic_epsilon:.6g} + zCDP rho {self.rho:.6g}), "
            f"delta {self.delta_spent:.3g} of {self.delta_cap:.3g}; "
            f"{self.committed} released, {self.pending} pending (charged), "
            f"{self.refunded} refunded"
        )


@dataclass(frozen=True)
class Remaining:
    epsilon: float
    delta: float
    grant: AccountStatus
    dataset: AccountStatus

    def explain(self) -> str:
        return f"{self.grant.explain()}\n{self.dataset.explain()}"


def grant_account(grant_id: str, dataset: str) -> str:
    return f"grant:{grant_id}:{dataset}"


def dataset_account(dataset: str) -> str:
    return f"dataset:{dataset}"


def _charge_units(value: float, units: int) -> int:
    return math.ceil(value * units - 1e-6)


def _cap_units(value: float, units: int) -> int:
    return math.floor(value * units + 1e-6)


def _spent(row: sqlite3.Row | tuple) -> tuple[int, int]:
    """(epsilon, delta) units spent by an account row, composing both rules."""
    _, _, _, basic_eps, basic_delta, rho, zcdp_delta, *_ = row
    eps = basic_eps
    if rho:
        eps += _charge_units(zcdp_to_epsilon(rho / RHO_UNITS, zcdp_delta / DELTA_UNITS), EPS_UNITS)
    return eps, basic_delta + zcdp_delta


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
    """Durable privacy-budget accounts in one SQLite file, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
            self._local.cursor = conn.cursor()  # reused by the read-only check
            self._local.writes = 0
            self._local.cache = {}
            self._local.cache_version = None
        return conn

    def _wrote(self) -> None:
        """Note a commit on this thread's connection (its own data_version does not move)."""
        self._local.writes += 1

    def _cached_accounts(self, grant_id: str, dataset: str) -> _Accounts:
        """Account rows for a read-only check, re-read only when the file changed.

        ``PRAGMA data_version`` moves whenever another connection (thread or process) commits;
        this thread's own commits are counted in ``_wrote``. So a check costs one statement
        on this thread's connection while nothing changed, and never sees a stale balance.
        """
        local = self._local
        if getattr(local, "conn", None) is None:
            self._conn()
        version = (local.cursor.execute("PRAGMA data_version").fetchone()[0], local.writes)
        cache = local.cache
        if local.cache_version != version:
            cache.clear()
            local.cache_version = version
        key = (grant_id, dataset)
        accounts = cache.get(key)
        if accounts is None:
            accounts = cache[key] = _Accounts.of(self._accounts(local.conn, grant_id, dataset))
        return accounts

    # -- accounts -------------------------------------------------------------------------

    def open_account(self, account: str, epsilon: float, delta: float) -> None:
        """Create an account or change its caps (a cap below what is spent blocks new uses)."""
        if epsilon <= 0 or not 0 <= delta < 1:
            raise InvalidRequestError(
                f"account {account}: epsilon must be > 0 and 0 <= delta < 1, "
                f"got ({epsilon}, {delta})"
            )
        self._conn().execute(
            "INSERT INTO accounts (account, eps_cap, delta_cap) VALUES (?, ?, ?) "
            "ON CONFLICT (account) DO UPDATE SET eps_cap = excluded.eps_cap, "
            "delta_cap = excluded.delta_cap",
            (account, _cap_units(epsilon, EPS_UNITS), _cap_units(delta, DELTA_UNITS)),
        )
        self._wrote()

    def _accounts(
        self, conn: sqlite3.Connection, grant_id: str, dataset: str
    ) -> tuple[tuple, tuple]:
        g, d = grant_account(grant_id, dataset), dataset_account(dataset)
        rows = {
            r[0]: r for r in conn.execute("SELECT * FROM accounts WHERE account IN (?, ?)", (g, d))
        }
        if g not in rows:
            raise InvalidRequestError(
                f"no budget account for grant {grant_id!r} on dataset {dataset!r}; "
                "create the grant through the authority first"
            )
        if d not in rows:
            raise InvalidRequestError(
                f"dataset {dataset!r} has no dataset-wide budget; its department must register it"
            )
        return rows[g], rows[d]

    @staticmethod
    def _units(loss: Loss) -> tuple[int, int, int | None]:
        if loss.epsilon < 0 or not 0 <= loss.delta < 1 or (loss.rho is not None and loss.rho <= 0):
            raise InvalidRequestError(
                f"invalid privacy loss {loss}: need epsilon >= 0, 0 <= delta < 1, rho > 0"
            )
        if loss.rho is not None and loss.delta <= 0:
            raise InvalidRequestError("a zCDP (Gaussian) loss needs delta > 0 to convert it")
        rho = None if loss.rho is None else _charge_units(loss.rho, RHO_UNITS)
        return _charge_units(loss.epsilon, EPS_UNITS), _charge_units(loss.delta, DELTA_UNITS), rho

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
        eps, delta, rho = self._units(loss)
        accounts = self._cached_accounts(grant_id, dataset)
        if rho is None and eps <= accounts.eps_room and delta <= accounts.delta_room:
            return None  # basic composition adds up: what _shortfall would find, sooner
        return self._shortfall(accounts.rows, eps, delta, rho)

    # -- reserve / commit / refund --------------------------------------------------------

    def reserve(self, grant_id: str, dataset: str, firm: str, loss: Loss) -> Reservation:
        """Charge ``loss`` to the grant's and dataset's accounts, or raise and charge nothing."""
        eps, delta, rho = self._units(loss)
        conn = self._conn()
        now = int(time.time() * 1000)
        rid = uuid.uuid4().hex
        conn.execute("BEGIN IMMEDIATE")
        try:
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
            conn.execute(
                f"UPDATE accounts SET {update}, n_reserved = n_reserved + 1 "
                "WHERE account IN (?, ?)",
                (*amounts, rows[0][0], rows[1][0]),
            )
            conn.execute("COMMIT")
            self._wrote()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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

    def _resolve(
        self, reservation_id: str, state: ReservationState, digest: str | None
    ) -> Reservation:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT * FROM reservations WHERE reservation_id = ?", (reservation_id,)
            ).fetchone()
            if row is None:
                raise ReservationStateError(f"no reservation {reservation_id!r}")
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
            accounts = (grant_account(row[1], row[2]), dataset_account(row[2]))
            eps, delta, rho = row[4], row[5], row[6]
            if state == ReservationState.COMMITTED:
                conn.execute(
                    "UPDATE accounts SET n_reserved = n_reserved - 1, "
                    "n_committed = n_committed + 1 WHERE account IN (?, ?)",
                    accounts,
                )
            elif rho is None:
                conn.execute(
                    "UPDATE accounts SET basic_eps = basic_eps - ?, basic_delta = basic_delta - ?, "
                    "n_reserved = n_reserved - 1, n_refunded = n_refunded + 1 "
                    "WHERE account IN (?, ?)",
                    (eps, delta, *accounts),
                )
            else:
                conn.execute(
                    "UPDATE accounts SET rho = rho - ?, zcdp_delta = zcdp_delta - ?, "
                    "n_reserved = n_reserved - 1, n_refunded = n_refunded + 1 "
                    "WHERE account IN (?, ?)",
                    (rho, delta, *accounts),
                )
            conn.execute("COMMIT")
            self._wrote()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self.reservation(reservation_id)

    def commit(self, reservation_id: str, release_digest: str) -> Reservation:
        """Mark a reservation released; ``release_digest`` is the SHA-256 hex of the release."""
        if len(release_digest) != 64 or any(c not in "0123456789abcdef" for c in release_digest):
            raise InvalidRequestError("release_digest must be a lowercase hex SHA-256 digest")
        return self._resolve(reservation_id, ReservationState.COMMITTED, release_digest)

    def refund(self, reservation_id: str) -> Reservation:
        """Give back a reservation's budget. Only call this if nothing was released."""
        return self._resolve(reservation_id, ReservationState.REFUNDED, None)

    def reservation(self, reservation_id: str) -> Reservation:
        row = (
            self._conn()
            .execute("SELECT * FROM reservations WHERE reservation_id = ?", (reservation_id,))
            .fetchone()
        )
        if row is None:
            raise ReservationStateError(f"no reservation {reservation_id!r}")
        return _reservation(row)

    def reservations(self, grant_id: str | None = None) -> list[Reservation]:
        sql, args = "SELECT * FROM reservations", ()
        if grant_id is not None:
            sql, args = sql + " WHERE grant_id = ?", (grant_id,)
        return [_reservation(r) for r in self._conn().execute(sql + " ORDER BY created_ms", args)]

    # -- reporting ------------------------------------------------------------------------

    def account(self, account: str) -> AccountStatus:
        row = (
            self._conn().execute("SELECT * FROM accounts WHERE account = ?", (account,)).fetchone()
        )
        if row is None:
            raise InvalidRequestError(f"no budget account {account!r}")
        return _status(row)

    def remaining(self, grant_id: str, dataset: str) -> Remaining:
        """What the grant may still spend on ``dataset``, the tighter of both accounts, and why."""
        g, d = (_status(r) for r in self._accounts(self._conn(), grant_id, dataset))
        return Remaining(min(g.epsilon_left, d.epsilon_left), min(g.delta_left, d.delta_left), g, d)

    def audit(self) -> list[str]:
        """Recompute every account from the reservation rows; list any disagreement."""
        conn = self._conn()
        problems = []
        for row in conn.execute("SELECT * FROM accounts"):
            account = row[0]
            if account.startswith("grant:"):
                _, grant_id, dataset = account.split(":", 2)
                where, args = "grant_id = ? AND dataset = ?", (grant_id, dataset)
            else:
                where, args = "dataset = ?", (account.split(":", 1)[1],)
            sums = conn.execute(
                "SELECT "
                "coalesce(sum(CASE WHEN rho IS NULL THEN eps END), 0), "
                "coalesce(sum(CASE WHEN rho IS NULL THEN delta END), 0), "
                "coalesce(sum(rho), 0), "
                "coalesce(sum(CASE WHEN rho IS NOT NULL THEN delta END), 0), "
                "count(CASE WHEN state = 'reserved' THEN 1 END), "
                "count(CASE WHEN state = 'committed' THEN 1 END), "
                "count(CASE WHEN state = 'refunded' THEN 1 END) "
                f"FROM reservations WHERE {where} AND state != 'refunded'",
                args,
            ).fetchone()
            refunded = conn.execute(
                f"SELECT count(*) FROM reservations WHERE {where} AND state = 'refunded'", args
            ).fetchone()[0]
            expected = (*sums[:6], refunded)
            if tuple(row[3:]) != expected:
                problems.append(f"{account}: stored {tuple(row[3:])}, recomputed {expected}")
            eps, delta = _spent(row)
            if eps > row[1] or delta > row[2]:
                problems.append(
                    f"{account}: spent ({eps}, {delta}) exceeds cap ({row[1]}, {row[2]})"
                )
        return problems


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
        account=row[0],
        epsilon_cap=row[1] / EPS_UNITS,
        delta_cap=row[2] / DELTA_UNITS,
        epsilon_spent=eps / EPS_UNITS,
        delta_spent=delta / DELTA_UNITS,
        basic_epsilon=row[3] / EPS_UNITS,
        rho=row[5] / RHO_UNITS,
        pending=row[7],
        committed=row[8],
        refunded=row[9],
    )
