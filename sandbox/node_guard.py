"""What a department node checks on every instruction before it touches its data.

A :class:`NodeGuard` trusts two things only: the authority's Ed25519 public key and its own
SQLite store (``STATE/guard.db``, files mode 0600). The hub that forwards instructions is not
trusted: :meth:`NodeGuard.admit` verifies, in this order,

1. the signature: the authority's key signed exactly these canonical bytes
   (:func:`policies.instructions.verify_signed`), so the SQL, the training plan and the spend
   are the ones the authority approved;
2. time: issued no later than now (plus a small clock skew), not expired, a lifetime no longer
   than the node allows, and the grant's validity not over;
3. the grant is not revoked (signed revocation notices the node has recorded with
   :meth:`NodeGuard.revoke`) and the instruction is not for an older grant version than one
   the node has already seen;
4. the nonce was never admitted before (replay);
5. the spend fits both the grant's own total for this dataset (signed, in the instruction)
   and the department's own cap for the dataset (:meth:`NodeGuard.set_dataset_cap`), counting
   everything this node has admitted before.

Checks 2 to 5 and the reservation (the nonce and the spend) are one SQLite transaction, so
concurrent admissions never overspend and a crash leaves either both or neither.
:meth:`NodeGuard.settle` keeps the spend when anything was released and gives it back only when
the node confirms that nothing was; an admission never settled stays charged.

>>> import tempfile
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from policies.instructions import Instruction, new_nonce, sign_instruction
>>> key = Ed25519PrivateKey.generate()
>>> guard = NodeGuard(tempfile.mkdtemp(), key.public_key(), clock=lambda: 1_700_000_000.0)
>>> guard.set_dataset_cap("tax", epsilon=5.0, delta=1e-6)
>>> instr = Instruction(kind="query", grant_id="g-1", grant_version=1,
...     grant_valid_until_ms=2_000_000_000_000, grant_epsilon_cap=1_000_000,
...     grant_delta_cap=0, firm="acme", dataset="tax", epsilon=600_000, delta=0,
...     issued_at_ms=1_700_000_000_000, expires_at_ms=1_700_000_060_000,
...     nonce=new_nonce(), min_group_size=1, sql="SELECT COUNT(*) FROM tax")
>>> admission = guard.admit(sign_instruction(key, instr))
>>> guard.grant_spent("g-1", "tax")
LossUnits(epsilon=600000, delta=0, rho=None)
>>> guard.admit(sign_instruction(key, instr))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sandbox.errors.InstructionRefused: instruction ... was already admitted by this node...
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.bounds import check_delta, check_epsilon
from policies.db import Database, private_dir
from policies.errors import InstructionError, InstructionSignatureError, PrivacyParameterError
from policies.instructions import (
    Instruction,
    Revocation,
    SignedMessage,
    verify_revocation,
    verify_signed,
)
from policies.loss import DELTA_UNITS, EPS_UNITS, LossUnits, cap_units
from sandbox.errors import AdmissionStateError, InstructionRefused
from sandbox.errors import PrivacyParameterError as SandboxPrivacyParameterError

#: The node's store inside its state directory.
GUARD_DB = "guard.db"
#: How far ahead of the node's clock an instruction's issue time may be.
DEFAULT_MAX_SKEW_MS = 5_000
#: The longest lifetime (expires_at - issued_at) a node accepts.
DEFAULT_MAX_LIFETIME_MS = 3_600_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS admissions (
    nonce TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    grant_version INTEGER NOT NULL,
    dataset TEXT NOT NULL,
    epsilon INTEGER NOT NULL,
    delta INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    admitted_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'released', 'refunded')),
    settled_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS grant_spend (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epsilon INTEGER NOT NULL CHECK (epsilon >= 0),
    delta INTEGER NOT NULL CHECK (delta >= 0),
    PRIMARY KEY (grant_id, dataset)
);
CREATE TABLE IF NOT EXISTS dataset_spend (
    dataset TEXT PRIMARY KEY,
    epsilon INTEGER NOT NULL CHECK (epsilon >= 0),
    delta INTEGER NOT NULL CHECK (delta >= 0)
);
CREATE TABLE IF NOT EXISTS dataset_caps (
    dataset TEXT PRIMARY KEY,
    epsilon INTEGER NOT NULL,
    delta INTEGER NOT NULL,
    set_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grant_versions (
    grant_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    grant_id TEXT PRIMARY KEY,
    grant_version INTEGER NOT NULL,
    revoked_at_ms INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS clock_floor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    now_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Admission:
    """An admitted instruction: run exactly ``instruction`` (its SQL or plan), then settle."""

    instruction: Instruction
    admitted_at_ms: int

    @property
    def nonce(self) -> str:
        return self.instruction.nonce


class NodeGuard:
    """A department node's own check of every instruction, with its own durable spend.

    ``clock`` returns seconds since the epoch (as :func:`time.time`). Datasets without a cap
    set by :meth:`set_dataset_cap` are refused: deny by default.
    """

    def __init__(
        self,
        state_dir: Path | str,
        authority_public_key: Ed25519PublicKey,
        clock: Callable[[], float] = time.time,
        *,
        max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
        max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS,
    ) -> None:
        if not isinstance(authority_public_key, Ed25519PublicKey):
            raise InstructionRefused(
                "signature", "a node needs the authority's Ed25519 public key to check anything"
            )
        self.state_dir = private_dir(Path(state_dir))
        self.db = Database(self.state_dir / GUARD_DB)
        self.db.script(_SCHEMA)
        self._key = authority_public_key
        self._clock = clock
        self.max_skew_ms = max_skew_ms
        self.max_lifetime_ms = max_lifetime_ms

    # -- configuration by the department ------------------------------------------------------

    def set_dataset_cap(self, dataset: str, epsilon: float, delta: float) -> None:
        """The most this node will ever spend on ``dataset``, over all grants (rounded down).

        Lowering a cap below what was spent already stops further admissions; nothing that
        was spent is undone.
        """
        try:
            eps = cap_units(check_epsilon(epsilon, "dataset cap epsilon"), EPS_UNITS)
            dlt = cap_units(check_delta(delta, "dataset cap delta"), DELTA_UNITS)
        except PrivacyParameterError as exc:
            raise SandboxPrivacyParameterError(str(exc)) from None
        if not isinstance(dataset, str) or not dataset:
            raise InstructionRefused("malformed", "name the dataset whose cap to set")
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO dataset_caps (dataset, epsilon, delta, set_at_ms) VALUES (?,?,?,?) "
                "ON CONFLICT (dataset) DO UPDATE SET epsilon = excluded.epsilon, "
                "delta = excluded.delta, set_at_ms = excluded.set_at_ms",
                (dataset, eps, dlt, self._now_ms()),
            )

    def revoke(self, signed: SignedMessage) -> Revocation:
        """Record the authority's signed revocation notice; the grant is refused from now on."""
        try:
            notice = verify_revocation(self._key, signed)
        except InstructionSignatureError as exc:
            raise InstructionRefused("signature", f"revocation notice refused: {exc}") from None
        except InstructionError as exc:
            raise InstructionRefused("malformed", f"revocation notice refused: {exc}") from None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO revocations (grant_id, grant_version, revoked_at_ms, "
                "recorded_at_ms, payload, signature) VALUES (?,?,?,?,?,?)",
                (
                    notice.grant_id,
                    notice.grant_version,
                    notice.revoked_at_ms,
                    self._now_ms(),
                    signed.payload,
                    signed.signature,
                ),
            )
        return notice

    # -- the checks ---------------------------------------------------------------------------

    def admit(self, signed: SignedMessage) -> Admission:
        """Verify ``signed`` and reserve its spend with its nonce, in one transaction.

        Raises :class:`InstructionRefused` (its ``code`` names the failed check); then nothing
        was reserved and the nonce is not used up.
        """
        try:
            instr = verify_signed(self._key, signed)
        except InstructionSignatureError as exc:
            raise InstructionRefused("signature", f"instruction refused: {exc}") from None
        except InstructionError as exc:
            raise InstructionRefused("malformed", f"instruction refused: {exc}") from None
        with self.db.transaction() as conn:
            now = self._floor(conn, self._now_ms())
            self._check_time(instr, now)
            self._check_grant(conn, instr)
            self._check_nonce(conn, instr)
            self._check_spend(conn, instr)
            self._reserve(conn, instr, now)
        return Admission(instr, now)

    def settle(self, admission: Admission, released: bool) -> None:
        """Keep the spend (``released=True``), or give it back when the node confirms that
        nothing was released (``released=False``). Settling again the same way does nothing;
        a refund after a release (or the reverse) is an :class:`AdmissionStateError`."""
        target = "released" if released else "refunded"
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT state, grant_id, dataset, epsilon, delta FROM admissions WHERE nonce = ?",
                (admission.nonce,),
            ).fetchone()
            if row is None:
                raise AdmissionStateError(
                    f"no admission {admission.nonce} in this node's store; settle only "
                    "admissions returned by admit() on this node"
                )
            state, grant_id, dataset, eps, dlt = row
            if state == target:
                return
            if state != "reserved":
                raise AdmissionStateError(
                    f"admission {admission.nonce} was already {state}; it cannot become {target}"
                )
            if not released:
                conn.execute(
                    "UPDATE grant_spend SET epsilon = epsilon - ?, delta = delta - ? "
                    "WHERE grant_id = ? AND dataset = ?",
                    (eps, dlt, grant_id, dataset),
                )
                conn.execute(
                    "UPDATE dataset_spend SET epsilon = epsilon - ?, delta = delta - ? "
                    "WHERE dataset = ?",
                    (eps, dlt, dataset),
                )
            conn.execute(
                "UPDATE admissions SET state = ?, settled_at_ms = ? WHERE nonce = ?",
                (target, self._now_ms(), admission.nonce),
            )

    # -- what the store holds -----------------------------------------------------------------

    def grant_spent(self, grant_id: str, dataset: str) -> LossUnits:
        """What this node has reserved or released under ``grant_id`` on ``dataset``."""
        row = (
            self.db.conn()
            .execute(
                "SELECT epsilon, delta FROM grant_spend WHERE grant_id = ? AND dataset = ?",
                (grant_id, dataset),
            )
            .fetchone()
        )
        eps, dlt = row or (0, 0)
        return LossUnits(int(eps), int(dlt), None)

    def dataset_spent(self, dataset: str) -> LossUnits:
        """What this node has reserved or released on ``dataset`` over all grants."""
        row = (
            self.db.conn()
            .execute("SELECT epsilon, delta FROM dataset_spend WHERE dataset = ?", (dataset,))
            .fetchone()
        )
        eps, dlt = row or (0, 0)
        return LossUnits(int(eps), int(dlt), None)

    def dataset_cap(self, dataset: str) -> LossUnits | None:
        """The department's cap on ``dataset`` in ledger units, or None if none is set."""
        row = (
            self.db.conn()
            .execute("SELECT epsilon, delta FROM dataset_caps WHERE dataset = ?", (dataset,))
            .fetchone()
        )
        return None if row is None else LossUnits(row[0], row[1], None)

    def is_revoked(self, grant_id: str) -> bool:
        row = (
            self.db.conn()
            .execute("SELECT 1 FROM revocations WHERE grant_id = ?", (grant_id,))
            .fetchone()
        )
        return row is not None

    def forget_expired(self, older_than_ms: int = 86_400_000) -> int:
        """Drop settled admissions that expired more than ``older_than_ms`` ago; their number.

        Safe for replay: the node's clock never goes back below the latest time it admitted
        at (kept in the store), so such an instruction is refused as expired anyway. Spend
        totals are kept; unsettled admissions are kept.
        """
        with self.db.transaction() as conn:
            now = self._floor(conn, self._now_ms())
            cur = conn.execute(
                "DELETE FROM admissions WHERE state != 'reserved' AND expires_at_ms < ?",
                (now - older_than_ms,),
            )
            return cur.rowcount

    # -- internals ----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @staticmethod
    def _floor(conn: sqlite3.Connection, now_ms: int) -> int:
        """``now_ms``, but never earlier than a time this node has already acted at."""
        row = conn.execute("SELECT now_ms FROM clock_floor WHERE id = 1").fetchone()
        if row is not None and row[0] >= now_ms:
            return int(row[0])
        conn.execute(
            "INSERT INTO clock_floor (id, now_ms) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET now_ms = excluded.now_ms",
            (now_ms,),
        )
        return now_ms

    def _check_time(self, instr: Instruction, now: int) -> None:
        name = f"instruction {instr.nonce}"
        if instr.issued_at_ms > now + self.max_skew_ms:
            raise InstructionRefused(
                "not_yet_valid",
                f"{name} is issued {instr.issued_at_ms - now} ms in the future; check the "
                "clocks of the node and the authority",
            )
        if now > instr.expires_at_ms:
            raise InstructionRefused(
                "expired",
                f"{name} expired {now - instr.expires_at_ms} ms ago; ask the hub for a new one",
            )
        if instr.expires_at_ms - instr.issued_at_ms > self.max_lifetime_ms:
            raise InstructionRefused(
                "lifetime",
                f"{name} is valid for {instr.expires_at_ms - instr.issued_at_ms} ms, longer than "
                f"the {self.max_lifetime_ms} ms this node accepts; ask for a shorter-lived one",
            )
        if now > instr.grant_valid_until_ms:
            raise InstructionRefused(
                "grant_expired",
                f"grant {instr.grant_id!r} expired {now - instr.grant_valid_until_ms} ms ago; "
                "the firm needs a renewed grant",
            )

    @staticmethod
    def _check_grant(conn: sqlite3.Connection, instr: Instruction) -> None:
        row = conn.execute(
            "SELECT grant_version FROM revocations WHERE grant_id = ?", (instr.grant_id,)
        ).fetchone()
        if row is not None:
            raise InstructionRefused(
                "revoked",
                f"grant {instr.grant_id!r} was revoked (version {row[0]}); this node runs "
                "nothing more under it",
            )
        row = conn.execute(
            "SELECT version FROM grant_versions WHERE grant_id = ?", (instr.grant_id,)
        ).fetchone()
        if row is not None and row[0] > instr.grant_version:
            raise InstructionRefused(
                "stale_grant",
                f"instruction is for version {instr.grant_version} of grant {instr.grant_id!r} "
                f"but this node has seen version {row[0]}; ask the hub for a new instruction",
            )

    @staticmethod
    def _check_nonce(conn: sqlite3.Connection, instr: Instruction) -> None:
        row = conn.execute(
            "SELECT admitted_at_ms FROM admissions WHERE nonce = ?", (instr.nonce,)
        ).fetchone()
        if row is not None:
            raise InstructionRefused(
                "replayed",
                f"instruction {instr.nonce} was already admitted by this node (at {row[0]} ms); "
                "a replay is refused: the hub must issue a new instruction",
            )

    @staticmethod
    def _check_spend(conn: sqlite3.Connection, instr: Instruction) -> None:
        cap = conn.execute(
            "SELECT epsilon, delta FROM dataset_caps WHERE dataset = ?", (instr.dataset,)
        ).fetchone()
        if cap is None:
            raise InstructionRefused(
                "no_dataset_cap",
                f"this node has no spending cap for dataset {instr.dataset!r}; the department "
                "sets one with set_dataset_cap before any use",
            )
        spent = conn.execute(
            "SELECT epsilon, delta FROM grant_spend WHERE grant_id = ? AND dataset = ?",
            (instr.grant_id, instr.dataset),
        ).fetchone() or (0, 0)
        if (
            spent[0] + instr.epsilon > instr.grant_epsilon_cap
            or spent[1] + instr.delta > instr.grant_delta_cap
        ):
            raise InstructionRefused(
                "grant_budget",
                f"grant {instr.grant_id!r} has spent {_fmt(spent)} of its "
                f"{_fmt((instr.grant_epsilon_cap, instr.grant_delta_cap))} on {instr.dataset!r} "
                f"at this node; {_fmt((instr.epsilon, instr.delta))} more "
                "does not fit. Nothing was reserved; ask for less or a larger grant",
            )
        spent = conn.execute(
            "SELECT epsilon, delta FROM dataset_spend WHERE dataset = ?", (instr.dataset,)
        ).fetchone() or (0, 0)
        if spent[0] + instr.epsilon > cap[0] or spent[1] + instr.delta > cap[1]:
            raise InstructionRefused(
                "dataset_budget",
                f"dataset {instr.dataset!r} has spent {_fmt(spent)} of the department's cap "
                f"{_fmt(cap)} at this node; {_fmt((instr.epsilon, instr.delta))} more does not "
                "fit. Nothing was reserved; the department decides whether to raise the cap",
            )

    @staticmethod
    def _reserve(conn: sqlite3.Connection, instr: Instruction, now: int) -> None:
        conn.execute(
            "INSERT INTO admissions (nonce, kind, grant_id, grant_version, dataset, epsilon, "
            "delta, expires_at_ms, admitted_at_ms, state) VALUES (?,?,?,?,?,?,?,?,?,'reserved')",
            (
                instr.nonce,
                instr.kind,
                instr.grant_id,
                instr.grant_version,
                instr.dataset,
                instr.epsilon,
                instr.delta,
                instr.expires_at_ms,
                now,
            ),
        )
        conn.execute(
            "INSERT INTO grant_spend (grant_id, dataset, epsilon, delta) VALUES (?,?,?,?) "
            "ON CONFLICT (grant_id, dataset) DO UPDATE SET "
            "epsilon = epsilon + excluded.epsilon, delta = delta + excluded.delta",
            (instr.grant_id, instr.dataset, instr.epsilon, instr.delta),
        )
        conn.execute(
            "INSERT INTO dataset_spend (dataset, epsilon, delta) VALUES (?,?,?) "
            "ON CONFLICT (dataset) DO UPDATE SET "
            "epsilon = epsilon + excluded.epsilon, delta = delta + excluded.delta",
            (instr.dataset, instr.epsilon, instr.delta),
        )
        conn.execute(
            "INSERT INTO grant_versions (grant_id, version) VALUES (?, ?) "
            "ON CONFLICT (grant_id) DO UPDATE SET version = max(version, excluded.version)",
            (instr.grant_id, instr.grant_version),
        )


def _fmt(units: tuple[int, int] | sqlite3.Row) -> str:
    """Integer units as (epsilon, delta) for a message."""
    return f"(epsilon {units[0] / EPS_UNITS:g}, delta {units[1] / DELTA_UNITS:g})"
