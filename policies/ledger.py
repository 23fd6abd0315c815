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

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from policies.accounts import (
    ACCOUNT_COLUMNS,
    AccountKey,
    AccountRow,
    AccountStatus,
    LedgerState,
    Remaining,
    Reservation,
    ReservationState,
    Room,
    account_row,
    account_status,
    check_digest,
    dataset_account,
    grant_account,
    reservation_from_row,
    shortfall,
    spent_units,
)
from policies.bounds import check_delta, check_epsilon
from policies.db import Database, open_database
from policies.errors import (
    BudgetExceededError,
    InvalidRequestError,
    LedgerMismatchError,
    PrivacyParameterError,
    ReservationStateError,
)
from policies.loss import (
    DELTA_UNITS,
    EPS_UNITS,
    RHO_UNITS,
    LossUnits,
    PrivacyLoss,
    cap_units,
)
from policies.replay import audit_ledger, read_ledger

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

#: The account counter each final state of a reservation moves to.
_COUNTED = {
    ReservationState.COMMITTED: "committed",
    ReservationState.WITHHELD: "withheld",
    ReservationState.REFUNDED: "refunded",
}


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

    def _cached_accounts(self, grant_id: str, dataset: str) -> Room:
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
            accounts = cache[key] = Room.of(self._accounts(local.conn, grant_id, dataset))
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
    ) -> tuple[AccountRow, AccountRow]:
        rows = {}
        for raw in conn.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE dataset = ? AND "
            "((scope = 'grant' AND grant_id = ?) OR (scope = 'dataset' AND grant_id = ''))",
            (dataset, grant_id),
        ):
            rows[raw[0]] = account_row(raw)
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

    def check(self, grant_id: str, dataset: str, loss: PrivacyLoss) -> str | None:
        """Read-only: why ``loss`` would not fit now, or ``None`` if it would."""
        eps, delta, rho = loss.units
        accounts = self._cached_accounts(grant_id, dataset)
        if rho is None and eps <= accounts.eps_room and delta <= accounts.delta_room:
            return None  # basic composition adds up: what _shortfall would find, sooner
        return shortfall(accounts.rows, eps, delta, rho)

    # -- reserve / commit / refund --------------------------------------------------------

    def reserve(
        self,
        grant_id: str,
        dataset: str,
        firm: str,
        loss: PrivacyLoss,
        conn: sqlite3.Connection | None = None,
    ) -> Reservation:
        """Charge ``loss`` to the grant's and dataset's accounts, or raise and charge nothing."""
        units = loss.units
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
        units: LossUnits,
    ) -> Reservation:
        """Inside the caller's write transaction: charge ``units`` (epsilon, delta, rho)."""
        eps, delta, rho = units
        now = int(time.time() * 1000)
        rid = uuid.uuid4().hex
        rows = self._accounts(conn, grant_id, dataset)
        short = shortfall(rows, eps, delta, rho)
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
        conn: sqlite3.Connection,
        assignments: str,
        args: tuple[int, ...],
        grant_id: str,
        dataset: str,
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

    def _row(self, conn: sqlite3.Connection, reservation_id: str) -> tuple[Any, ...]:
        row: tuple[Any, ...] | None = conn.execute(
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
        counts = f"n_reserved = n_reserved - 1, n_{_COUNTED[state]} = n_{_COUNTED[state]} + 1"
        if state != ReservationState.REFUNDED:
            self._update_both(conn, counts, (), grant_id, dataset)
        elif rho is None:
            self._update_both(
                conn,
                f"basic_eps = basic_eps - ?, basic_delta = basic_delta - ?, {counts}",
                (eps, delta),
                grant_id,
                dataset,
            )
        else:
            self._update_both(
                conn, f"rho = rho - ?, zcdp_delta = zcdp_delta - ?, {counts}", (rho, delta),
                grant_id, dataset,
            )  # fmt: skip
        return reservation_from_row((*row[:7], str(state), row[8], now, digest))

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
        return reservation_from_row(self._row(conn or self._conn(), reservation_id))

    def reservations(self, grant_id: str | None = None) -> list[Reservation]:
        sql, args = "SELECT * FROM reservations", tuple[str, ...]()
        if grant_id is not None:
            sql, args = sql + " WHERE grant_id = ?", (grant_id,)
        rows = self._conn().execute(sql + " ORDER BY created_ms", args)
        return [reservation_from_row(r) for r in rows]

    # -- reporting ------------------------------------------------------------------------

    def account(self, account: AccountKey) -> AccountStatus:
        if not isinstance(account, AccountKey):
            raise InvalidRequestError("name an account with grant_account() or dataset_account()")
        raw = (
            self._conn()
            .execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts "
                "WHERE scope = ? AND grant_id = ? AND dataset = ?",
                tuple(account),
            )
            .fetchone()
        )
        if raw is None:
            raise InvalidRequestError(f"no budget account {account}")
        return account_status(account_row(raw))

    def remaining(self, grant_id: str, dataset: str) -> Remaining:
        """What the grant may still spend on ``dataset``, the tighter of both accounts, and why."""
        g, d = (account_status(r) for r in self._accounts(self._conn(), grant_id, dataset))
        return Remaining(min(g.epsilon_left, d.epsilon_left), min(g.delta_left, d.delta_left), g, d)

    def snapshot(self, conn: sqlite3.Connection | None = None) -> LedgerState:
        """Every account and reservation as stored (to compare with the log's replay)."""
        return read_ledger(conn or self._conn())

    def audit(self) -> list[str]:
        """Recompute every account from the reservation rows; list any disagreement."""
        return audit_ledger(self.snapshot())


__all__ = [
    "DELTA_UNITS",
    "EPS_UNITS",
    "RHO_UNITS",
    "AccountKey",
    "AccountStatus",
    "BudgetLedger",
    "LedgerState",
    "Remaining",
    "Reservation",
    "ReservationState",
    "check_digest",
    "dataset_account",
    "grant_account",
    "spent_units",
]
