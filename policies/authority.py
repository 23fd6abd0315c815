"""The policy authority: one object that grants, decides, charges and records every use.

This is the facade the query service and training jobs call: ``decide`` a request, then
``use`` the permits (:mod:`policies.use`: reserve, run, commit or refund). Each call writes
its entry to the transparency log in the same SQLite transaction as the change it records,
so the log holds every grant change, request, decision, reservation, release (with the
SHA-256 of what was released), withheld result and refund, and a crash can never separate a
budget change from its entry.

A permit is issued with an unguessable ``decision_id`` recorded in the store; ``reserve``
looks it up, uses the stored obligations (never the caller's object), and consumes it. A
revocation wins: ``reserve`` and ``commit`` check the grant inside their own transaction
(:mod:`policies.reservations`).

>>> import tempfile, pathlib
>>> authority = Authority(pathlib.Path(tempfile.mkdtemp()) / "state")
>>> authority.log.search(kind="policy")[0]["kind"]
'policy'
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from policies import reservations
from policies.bounds import check_text
from policies.datasets import DatasetPolicy
from policies.db import Database, private_dir
from policies.engine import Decision, PolicyEngine
from policies.errors import InvalidRequestError, KeyFileError, LedgerMismatchError, StateError
from policies.grants import Grant
from policies.keys import load_signing_key
from policies.ledger import BudgetLedger, Remaining, Reservation, dataset_account, grant_account
from policies.log import TransparencyLog
from policies.loss import PrivacyLoss
from policies.parsing import describe
from policies.registry import Registry, UnreadableGrant
from policies.replay import ledger_differences
from policies.requests import Request
from policies.reservations import Books, decision_ref, release_digest
from policies.treehead import SignedTreeHead
from policies.use import OnFailure, Outcome, Settled, governed_use, refund_all

#: The one database of a state directory: registry, ledger, decisions and log.
DB_FILE = "state.db"
_LEGACY_FILES = ("grants.db", "ledger.db", "log.db")

_DECISIONS = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, firm TEXT NOT NULL, grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL, eps INTEGER NOT NULL, delta INTEGER NOT NULL, rho INTEGER,
    plan_digest TEXT, request_digest TEXT NOT NULL, issued_ms INTEGER NOT NULL,
    log_index INTEGER NOT NULL, used_ms INTEGER, reservation_id TEXT)
"""

_P = ParamSpec("_P")
_R = TypeVar("_R")
T = TypeVar("T")


def default_keys_dir(state_dir: Path) -> Path:
    """Where the signing key lives by default: ``<state_dir>-keys`` beside the state directory."""
    state_dir = Path(state_dir)
    return state_dir.parent / f"{state_dir.name}-keys"


def _guarded(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Report SQLite and validation failures as the policies' own errors."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StateError(
                f"the state database failed ({type(exc).__name__}: {exc}); check the disk, the "
                "file permissions and that the state directory was not modified by hand"
            ) from None
        except ValidationError as exc:
            raise InvalidRequestError(describe(exc, "input")) from None
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise StateError(f"cannot use{where}: {exc.strerror or exc}") from None

    return call


class Authority:
    """Grants, the engine, the ledger and the log over one state directory.

    ``state_dir`` holds ``state.db`` (registry, ledger, decisions and log in one SQLite
    file). The Ed25519 signing key lives apart, in ``keys_dir`` (default
    ``<state_dir>-keys``); it is created only together with a new, empty log.
    ``verify_ledger`` checks at start-up that the ledger is what the log implies.
    """

    @_guarded
    def __init__(
        self,
        state_dir: Path,
        clock: Callable[[], float] = time.time,
        keys_dir: Path | None = None,
        verify_ledger: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.keys_dir = Path(keys_dir) if keys_dir is not None else default_keys_dir(state_dir)
        state_abs, keys_abs = self.state_dir.resolve(), self.keys_dir.resolve()
        if keys_abs == state_abs or state_abs in keys_abs.parents:
            raise KeyFileError(
                f"the keys directory {self.keys_dir} must not be inside the state directory "
                f"{self.state_dir}; keep the signing key apart from the databases"
            )
        private_dir(self.state_dir)
        db_path = self.state_dir / DB_FILE
        legacy = [name for name in _LEGACY_FILES if (self.state_dir / name).exists()]
        if legacy and not db_path.exists():
            raise StateError(
                f"{self.state_dir} holds the old separate databases ({', '.join(legacy)}); "
                f"this version keeps all state in one {DB_FILE}: start from a new state directory"
            )
        self.db = Database(db_path)
        self.registry = Registry(self.db)
        self.ledger = BudgetLedger(self.db)
        self.db.script(_DECISIONS)
        self.log = TransparencyLog(self.db, None, clock)
        key = load_signing_key(self.keys_dir, create=self.log.size == 0)
        self.log._key = key
        self.public_key: Ed25519PublicKey = key.public_key()
        self._clock = clock
        self.engine = PolicyEngine(self.registry, self.ledger, clock=clock)
        self._books = Books(self.db, self.registry, self.ledger, self.log, clock)
        self._record_policy()
        if verify_ledger:
            self.verify_ledger()

    def _record_policy(self) -> None:
        """Log the Cedar rules whenever they differ from the last ones logged."""
        digest = self.engine.policy_digest
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT data FROM entries WHERE kind = 'policy' ORDER BY idx DESC LIMIT 1"
            ).fetchone()
            if row is None or json.loads(row[0]).get("digest") != digest:
                self.log.append_in(
                    conn, [("policy", {"digest": digest, "rules": self.engine.rules})]
                )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the ledger against the log -------------------------------------------------------

    @_guarded
    def verify_ledger(self) -> None:
        """Raise :class:`LedgerMismatchError` unless the ledger is exactly what the log implies.

        Reads every ledger entry of the log (kinds ``grant``, ``dataset``, ``reservation``,
        ``release``, ``withheld``, ``refund``): the time grows with the log.
        """
        differences = ledger_differences(self.db)
        if differences:
            raise LedgerMismatchError(
                "the budget ledger does not match the transparency log (it was reset or edited "
                f"outside the authority): {differences[0]}; restore {DB_FILE} from a backup "
                "and run `sandbox audit check`"
            )

    # -- datasets and grants --------------------------------------------------------------

    @_guarded
    def register_dataset(self, policy: DatasetPolicy) -> DatasetPolicy:
        """Register (or update) a dataset's classification, identity columns and budget cap."""
        if not isinstance(policy, DatasetPolicy):
            policy = DatasetPolicy.parse(policy)
        with self.db.transaction() as conn:
            stored = self.registry.put_dataset(policy, conn)
            cap = self.ledger.open_account(
                dataset_account(stored.dataset_id), stored.epsilon_cap, stored.delta_cap, conn
            )
            self.log.append_in(
                conn,
                [
                    (
                        "dataset",
                        {
                            "dataset": stored.dataset_id,
                            "policy": stored.model_dump(mode="json"),
                            "cap": list(cap),
                        },
                    )
                ],
            )
        return stored

    @_guarded
    def create_grant(self, grant: Grant) -> Grant:
        """Store a new grant, open its budget accounts and log it (one transaction)."""
        if not isinstance(grant, Grant):
            grant = Grant.parse(grant)
        with self.db.transaction() as conn:
            for name in grant.datasets:
                self.registry.dataset(name, conn)  # raises if a dataset is not registered
            stored = self.registry.create_grant(grant, conn)
            caps = {
                name: list(
                    self.ledger.open_account(
                        grant_account(stored.grant_id, name), terms.epsilon, terms.delta, conn
                    )
                )
                for name, terms in stored.datasets.items()
            }
            self.log.append_in(
                conn,
                [
                    (
                        "grant",
                        {
                            "grant_id": stored.grant_id,
                            "firm": stored.firm,
                            "grant": stored.model_dump(mode="json"),
                            "caps": caps,
                        },
                    )
                ],
            )
        return stored

    @_guarded
    def revoke_grant(self, grant_id: str, revoked_by: str, reason: str) -> Grant | UnreadableGrant:
        """Revoke a grant (a new version, and a log entry); later uses under it are denied,
        reservations and releases of decisions taken before are refused.

        A grant whose stored version cannot be read is revoked too.
        """
        check_text(grant_id, "grant id", 200)
        check_text(revoked_by, "revoked_by")
        check_text(reason, "reason")
        with self.db.transaction() as conn:
            stored = self.registry.revoke_grant(grant_id, revoked_by, reason, conn)
            self.log.append_in(
                conn,
                [
                    (
                        "revocation",
                        {
                            "grant_id": grant_id,
                            "firm": stored.firm,
                            "version": stored.version,
                            "revoked_by": revoked_by,
                            "reason": reason,
                        },
                    )
                ],
            )
        return stored

    # -- uses -----------------------------------------------------------------------------

    @_guarded
    def decide(self, request: Request) -> Decision:
        """Decide a request and log the request and the decision (one durable write).

        A permit is recorded with a new, unguessable ``decision_id``: the only way to
        reserve its budget, once.
        """
        if not isinstance(request, Request):
            request = Request.parse(request)
        digest = request.digest()
        decision = replace(self.engine.decide(request), request_digest=digest)
        ob = decision.obligations
        decision_id = None
        common = {"firm": request.firm, "dataset": request.dataset, "request_digest": digest}
        decision_fields = {
            **common,
            **decision.to_json(),
            "purpose": request.purpose,
            "epsilon": request.epsilon,
            "delta": request.delta,
        }
        if decision.permit and ob is not None:
            units = ob.loss.units
            decision_id = secrets.token_hex(16)
            decision_fields["decision_ref"] = decision_ref(decision_id)
        with self.db.transaction() as conn:
            _, index = self.log.append_in(
                conn,
                [
                    ("request", {**common, "request": request.model_dump(mode="json")}),
                    ("decision", decision_fields),
                ],
            )
            if decision_id is not None and ob is not None:
                conn.execute(
                    "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                    (
                        decision_id,
                        ob.firm,
                        ob.grant_id,
                        ob.dataset,
                        *units,
                        ob.plan_digest,
                        digest,
                        self._now_ms(),
                        index,
                    ),
                )
        return replace(decision, log_index=index, decision_id=decision_id)

    @_guarded
    def reserve(self, decision: Decision, spend: PrivacyLoss | None = None) -> Reservation:
        """Reserve the loss of a permit issued by :meth:`decide`, once, and log it.

        The firm, grant, dataset and loss are the ones stored when it was issued; ``spend``
        (at most that loss) is charged instead when the use will spend less. Raises
        :class:`DecisionError` for a decision not issued here or already used,
        :class:`GrantRevokedError` if the grant was revoked since, and
        :class:`BudgetExceededError` if the budget no longer allows it (both logged, nothing
        charged). Prefer :meth:`use`, which also commits or refunds.
        """
        return reservations.reserve(self._books, decision, spend)

    @_guarded
    def commit(self, reservation: Reservation, released: bytes) -> int:
        """Charge the reservation for good and log the release with its digest; return the index.

        Call this before handing ``released`` to the firm. If the grant was revoked since the
        decision, nothing may be released: the reservation stays charged, a ``withheld``
        entry is logged, and :class:`GrantRevokedError` is raised.
        """
        return reservations.commit(self._books, reservation, released)

    @_guarded
    def refund(self, reservation: Reservation) -> int:
        """Give the budget back (only if nothing was released) and log it; return the index."""
        return reservations.refund(self._books, reservation)

    def use(
        self,
        decisions: Sequence[Decision],
        run: Callable[[tuple[Reservation, ...]], Outcome[T]],
        *,
        spend: Sequence[PrivacyLoss] | None = None,
        on_failure: OnFailure = refund_all,
    ) -> Settled[T]:
        """The governed-use path, the one way queries and training jobs spend budget.

        Reserve each permit's loss (or the ``spend`` the use calibrated, never more), call
        ``run(reservations)``, then commit its released bytes, or, when nothing was handed
        out, refund each reservation unless ``on_failure`` reports what left under it.
        Every step writes its ledger change and log entry in one transaction. See
        :mod:`policies.use`.
        """
        return governed_use(self, decisions, run, spend=spend, on_failure=on_failure)

    @_guarded
    def remaining(self, grant_id: str, dataset: str) -> Remaining:
        return self.ledger.remaining(grant_id, dataset)

    # -- the record -----------------------------------------------------------------------

    @_guarded
    def tree_head(self, store: bool = True) -> SignedTreeHead:
        """Sign and return a tree head for the log as it is now (kept unless ``store`` is
        false)."""
        return self.log.sign_tree_head(store)

    @_guarded
    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.log.inclusion_proof(index, size)

    @_guarded
    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return self.log.consistency_proof(first, second)

    @_guarded
    def export(self, path: Path) -> SignedTreeHead:
        """Write the log and a fresh signed tree head to ``path`` (mode 0600)."""
        try:
            return self.log.export(Path(path))
        except OSError as exc:
            raise StateError(f"cannot write the export {path}: {exc.strerror}") from None


__all__ = [
    "DB_FILE",
    "Authority",
    "Outcome",
    "Settled",
    "decision_ref",
    "default_keys_dir",
    "ledger_differences",
    "release_digest",
]
