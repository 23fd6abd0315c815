"""The budget ledger recomputed, from the transparency log or from its own reservations,
and compared with what is stored.

Every ledger change is written in the same transaction as its log entry, and the entries carry
the amounts in the ledger's integer units:

* ``grant``: ``caps`` = ``{dataset: [micro-epsilon, femto-delta]}`` opens or sets the grant's
  accounts; ``dataset``: ``cap`` = ``[micro-epsilon, femto-delta]`` the dataset-wide one;
* ``reservation`` with ``status: "reserved"``: ``reservation_id``, ``grant_id``, ``dataset``,
  ``firm`` and ``units`` = ``{"epsilon": int, "delta": int, "rho": int | null}``;
* ``release`` (with ``release_sha256``), ``withheld`` and ``refund``: ``reservation_id``.

:func:`replay` folds those entries into a :class:`policies.accounts.LedgerState`;
:func:`ledger_differences` compares it with the stored ledger (the authority does at start-up:
a reset or edited ledger is a :class:`LedgerMismatchError`), ``sandbox audit verify`` replays
an export offline, and :func:`audit_ledger` recomputes the accounts from the reservations.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from policies.accounts import (
    ACCOUNT_COLUMNS,
    AccountKey,
    LedgerState,
    ReservationState,
    dataset_account,
    grant_account,
    spent_units,
)
from policies.db import Database
from policies.errors import LedgerMismatchError

#: The entry kinds that change the ledger.
LEDGER_KINDS = ("grant", "dataset", "reservation", "release", "withheld", "refund")


def _int(value: Any, what: str, index: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LedgerMismatchError(f"log entry {index}: {what} is not a non-negative integer")
    return value


def _pair(value: Any, what: str, index: Any) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise LedgerMismatchError(f"log entry {index}: {what} is not a pair of integers")
    return _int(value[0], what, index), _int(value[1], what, index)


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str):
        raise LedgerMismatchError(f"log entry {entry.get('index')}: {key} is missing")
    return value


def apply(state: LedgerState, entry: Mapping[str, Any]) -> None:
    """Apply one log entry (of any kind; those that do not touch the ledger are skipped)."""
    kind, index = entry.get("kind"), entry.get("index")
    if kind == "grant":
        caps = entry.get("caps")
        if not isinstance(caps, dict):
            raise LedgerMismatchError(f"log entry {index}: a grant entry without caps")
        grant_id = _text(entry, "grant_id")
        for dataset, pair in caps.items():
            state.open(grant_account(grant_id, dataset), *_pair(pair, "caps", index))
    elif kind == "dataset":
        state.open(dataset_account(_text(entry, "dataset")), *_pair(entry.get("cap"), "cap", index))
    elif kind == "reservation":
        if entry.get("status") != "reserved":
            return  # a refused reservation charged nothing
        units = entry.get("units")
        if not isinstance(units, dict):
            raise LedgerMismatchError(f"log entry {index}: a reservation without units")
        rho = units.get("rho")
        grant_id, dataset = _text(entry, "grant_id"), _text(entry, "dataset")
        state.apply_reservation(
            _text(entry, "reservation_id"),
            grant_id,
            dataset,
            _text(entry, "firm"),
            _int(units.get("epsilon"), "units.epsilon", index),
            _int(units.get("delta"), "units.delta", index),
            None if rho is None else _int(rho, "units.rho", index),
        )
        for key in (grant_account(grant_id, dataset), dataset_account(dataset)):
            values = state.accounts[key]
            eps, delta = spent_units(*values[2:6])
            if eps > values[0] or delta > values[1]:
                raise LedgerMismatchError(
                    f"log entry {index}: the reservation takes {key} past its cap"
                )
    elif kind == "release":
        state.resolve(_text(entry, "reservation_id"), "committed", _text(entry, "release_sha256"))
    elif kind == "withheld":
        state.resolve(_text(entry, "reservation_id"), "withheld")
    elif kind == "refund":
        state.resolve(_text(entry, "reservation_id"), "refunded")


def replay(entries: Iterable[Mapping[str, Any]]) -> LedgerState:
    """The ledger the ``entries`` (in log order) imply; raise on an impossible sequence
    (a release of a reservation never made, a reservation resolved twice, ...)."""
    state = LedgerState()
    for entry in entries:
        apply(state, entry)
    return state


def read_ledger(conn: sqlite3.Connection) -> LedgerState:
    """Every account and reservation as stored, read on ``conn``."""
    state = LedgerState()
    for raw in conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts"):
        state.accounts[AccountKey(*raw[:3])] = tuple(raw[3:])
    for row in conn.execute(
        "SELECT reservation_id, grant_id, dataset, firm, eps, delta, rho, state, "
        "release_digest FROM reservations"
    ):
        state.reservations[row[0]] = tuple(row[1:])
    return state


def audit_ledger(stored: LedgerState) -> list[str]:
    """Recompute every account of ``stored`` from its reservations; list any disagreement."""
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
            problems.append(f"{key}: spent ({eps}, {delta}) exceeds cap ({values[0]}, {values[1]})")
    return problems


def ledger_differences(db: Database, limit: int = 5) -> list[str]:
    """How the stored ledger differs from what the log implies (empty if it does not).

    Reads every ledger entry of the log in one snapshot with the ledger tables; an
    impossible sequence of entries is reported as a difference too.
    """
    conn = db.conn()
    conn.execute("BEGIN")  # one snapshot for both sides
    try:
        marks = ",".join("?" * len(LEDGER_KINDS))
        rows = conn.execute(
            f"SELECT data FROM entries WHERE kind IN ({marks}) ORDER BY idx", LEDGER_KINDS
        )
        try:
            expected = replay(json.loads(data) for (data,) in rows)
        except LedgerMismatchError as exc:
            return [str(exc)]
        except ValueError:
            return ["a ledger entry of the log is not JSON"]
        stored = read_ledger(conn)
    finally:
        conn.execute("COMMIT")
    return expected.differences(stored, limit)
