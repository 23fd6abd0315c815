"""A department node's own durable state: its secret key, the plans it was told the authority
approved, and what it has released under each of them.

The node keeps this apart from the hub and trusts only it (and, once signatures are added, the
authority's public key): whatever the server's messages say, the node

* runs only a job whose configuration hash (:meth:`federation.job.JobSpec.config_hash`) is the
  plan digest approved for that grant and dataset, with the approved sampling rate, noise
  multiplier and number of DP-SGD steps, and never a non-private job on person data;
* counts the DP-SGD steps, row-count releases and evaluations it has run per grant, dataset and
  plan in a SQLite file that outlives every run, so a second run of the same grant cannot train
  beyond what was approved;
* answers "did anything leave this node under that grant?" (:meth:`NodeStore.usage`), which the
  hub needs before it may refund a reservation.

``secret.key`` (32 bytes from ``os.urandom``, file mode 0600) keys the node's HMACs, e.g. the
train/test split of its rows; it never leaves the node.

>>> import tempfile
>>> store = NodeStore(tempfile.mkdtemp())
>>> store.approve(Approval("G1", "tax", "ab" * 32, max_steps=10, sample_rate=0.1,
...                        noise_multiplier=1.2))
>>> store.take_steps("G1", "tax", "ab" * 32, 4)
4
>>> store.usage("G1", "tax").steps
4
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from federation.accounting import plan_job
from federation.errors import NodeApprovalError, NodeBudgetRefusedError, NodeStateError
from federation.job import JobSpec

SECRET_FILE = "secret.key"
STORE_FILE = "node.db"
SECRET_BYTES = 32

_DIGEST = re.compile(r"[0-9a-f]{64}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    max_steps INTEGER NOT NULL,
    sample_rate REAL NOT NULL,
    noise_multiplier REAL NOT NULL,
    person_data INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    PRIMARY KEY (grant_id, dataset, plan_digest)
);
CREATE TABLE IF NOT EXISTS tallies (
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    dp_rows INTEGER,
    evaluations INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (grant_id, dataset, plan_digest)
);
"""


@dataclass(frozen=True)
class Approval:
    """What the authority decided for one dataset under one grant: the plan and its limits.

    ``plan_digest`` is the job's configuration hash, as decided and logged; ``max_steps`` the
    DP-SGD steps its reservation covers; ``sample_rate`` and ``noise_multiplier`` the DP-SGD
    parameters that reservation was computed with. ``person_data=False`` is only for synthetic
    benchmark data: it is the one case in which a non-private (``dp=False``) job may run.
    Approving the same plan again (a second reservation) adds ``max_steps`` and one more use.
    """

    grant_id: str
    dataset: str
    plan_digest: str
    max_steps: int
    sample_rate: float
    noise_multiplier: float
    person_data: bool = True

    def __post_init__(self) -> None:
        if not self.grant_id or not self.dataset:
            raise NodeApprovalError("an approval names a grant and a dataset")
        if not _DIGEST.fullmatch(self.plan_digest):
            raise NodeApprovalError("plan_digest must be a SHA-256 hex digest (64 characters)")
        if self.max_steps < 0:
            raise NodeApprovalError("max_steps must not be negative")
        if not (0 < self.sample_rate <= 1) or not math.isfinite(self.noise_multiplier):
            raise NodeApprovalError("an approval needs a sample rate in (0, 1] and finite noise")
        if self.noise_multiplier < 0:
            raise NodeApprovalError("noise_multiplier must not be negative")


@dataclass(frozen=True)
class Usage:
    """What a node has released under one grant and dataset, over every run so far."""

    steps: int = 0
    row_counts: int = 0
    evaluations: int = 0

    @property
    def anything(self) -> bool:
        """True if any DP output (a step, a row count, an evaluation) left the node."""
        return bool(self.steps or self.row_counts or self.evaluations)


class NodeStore:
    """The durable state of one department node, in ``directory`` (created 0700)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise NodeStateError(
                f"cannot create the node state directory {self.directory} ({exc.strerror})"
            ) from None
        self.path = self.directory / STORE_FILE

    # --- the node's secret -------------------------------------------------------------------

    def secret(self) -> bytes:
        """The node's HMAC key: created once from ``os.urandom`` (mode 0600), then read."""
        path = self.directory / SECRET_FILE
        if not path.exists():
            _create_secret(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            key = path.read_bytes()
        except OSError as exc:
            raise NodeStateError(f"cannot read the node secret {path} ({exc.strerror})") from None
        if mode & 0o077:
            raise NodeStateError(
                f"the node secret {path} is readable by others; run `chmod 600 {path}`"
            )
        if len(key) != SECRET_BYTES:
            raise NodeStateError(
                f"the node secret {path} is damaged (expected {SECRET_BYTES} bytes); restore it "
                "from the node's backup. A new key would move rows between train and test"
            )
        return key

    # --- approvals ---------------------------------------------------------------------------

    def approve(self, approval: Approval) -> None:
        """Record that the authority approved ``approval`` (one more use of that plan)."""
        with self._write() as db:
            row = db.execute(
                "SELECT sample_rate, noise_multiplier, person_data FROM approvals "
                "WHERE grant_id=? AND dataset=? AND plan_digest=?",
                (approval.grant_id, approval.dataset, approval.plan_digest),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (
                        approval.grant_id,
                        approval.dataset,
                        approval.plan_digest,
                        approval.max_steps,
                        approval.sample_rate,
                        approval.noise_multiplier,
                        int(approval.person_data),
                    ),
                )
                return
            if (row[0], row[1], bool(row[2])) != (
                approval.sample_rate,
                approval.noise_multiplier,
                approval.person_data,
            ):
                raise NodeApprovalError(
                    f"the plan {approval.plan_digest[:16]}… of grant {approval.grant_id!r} is "
                    "already approved with other DP-SGD parameters; a plan digest names one plan"
                )
            db.execute(
                "UPDATE approvals SET max_steps = max_steps + ?, uses = uses + 1 "
                "WHERE grant_id=? AND dataset=? AND plan_digest=?",
                (approval.max_steps, approval.grant_id, approval.dataset, approval.plan_digest),
            )

    def withdraw(self, approval: Approval) -> bool:
        """Take back one approved use of a plan whose job did not run, so it can never run.

        Returns True if what the node has released under the plan still fits in the remaining
        approved uses (this use released nothing); False, changing nothing, otherwise: then
        something may have left the node under it and its reservation must stay charged.
        """
        key = (approval.grant_id, approval.dataset, approval.plan_digest)
        with self._write() as db:
            row = db.execute(
                "SELECT max_steps, uses FROM approvals WHERE grant_id=? AND dataset=? AND "
                "plan_digest=?",
                key,
            ).fetchone()
            if row is None:
                return False
            steps_left, uses_left = int(row[0]) - approval.max_steps, int(row[1]) - 1
            steps, dp_rows, evaluations = self._tally(db, key)
            if (
                steps_left < 0
                or steps > steps_left
                or evaluations > uses_left
                or (dp_rows is not None and uses_left == 0)
            ):
                return False
            if uses_left == 0:
                db.execute(
                    "DELETE FROM approvals WHERE grant_id=? AND dataset=? AND plan_digest=?", key
                )
                db.execute(
                    "DELETE FROM tallies WHERE grant_id=? AND dataset=? AND plan_digest=?", key
                )
            else:
                db.execute(
                    "UPDATE approvals SET max_steps = ?, uses = ? WHERE grant_id=? AND "
                    "dataset=? AND plan_digest=?",
                    (steps_left, uses_left, *key),
                )
            return True

    def approval(self, grant_id: str, dataset: str, plan_digest: str) -> Approval:
        """The approval of this plan for the grant and dataset, or :class:`NodeApprovalError`."""
        with self._read() as db:
            row = db.execute(
                "SELECT max_steps, sample_rate, noise_multiplier, person_data FROM approvals "
                "WHERE grant_id=? AND dataset=? AND plan_digest=?",
                (grant_id, dataset, plan_digest),
            ).fetchone()
            known = row is not None or (
                db.execute(
                    "SELECT 1 FROM approvals WHERE grant_id=? AND dataset=? LIMIT 1",
                    (grant_id, dataset),
                ).fetchone()
                is not None
            )
        if row is None:
            if not known:
                raise NodeApprovalError(
                    f"node {dataset!r} knows no approval of grant {grant_id!r}; it runs only "
                    "what the authority approved for this dataset. Ask for a decision first"
                )
            raise NodeApprovalError(
                f"node {dataset!r} refuses job {plan_digest[:16]}…: it is not the plan approved "
                f"under grant {grant_id!r}. Submit the approved job, or ask for a new decision"
            )
        return Approval(grant_id, dataset, plan_digest, int(row[0]), row[1], row[2], bool(row[3]))

    def _uses(self, db: sqlite3.Connection, key: tuple[str, str, str]) -> tuple[int, int]:
        row = db.execute(
            "SELECT max_steps, uses FROM approvals WHERE grant_id=? AND dataset=? AND "
            "plan_digest=?",
            key,
        ).fetchone()
        if row is None:
            raise NodeApprovalError(f"node {key[1]!r} has no approval of grant {key[0]!r}")
        return int(row[0]), int(row[1])

    # --- tallies -----------------------------------------------------------------------------

    def take_steps(self, grant_id: str, dataset: str, plan_digest: str, steps: int) -> int:
        """Count ``steps`` more DP-SGD steps before they run; return the new total.

        Raises :class:`NodeBudgetRefusedError` (counting nothing) if the total would exceed the
        approved steps. Counted steps are never given back: a crash mid-step must not free them.
        """
        key = (grant_id, dataset, plan_digest)
        with self._write() as db:
            allowed, _ = self._uses(db, key)
            taken = self._tally(db, key)[0]
            if taken + steps > allowed:
                raise NodeBudgetRefusedError(
                    f"node {dataset!r} has taken {taken} of the {allowed} DP-SGD steps approved "
                    f"under grant {grant_id!r} and refuses {steps} more; submit a new job"
                )
            db.execute(
                "UPDATE tallies SET steps = ? WHERE grant_id=? AND dataset=? AND plan_digest=?",
                (taken + steps, *key),
            )
            return taken + steps

    def release_row_count(
        self, grant_id: str, dataset: str, plan_digest: str, draw: Callable[[], int]
    ) -> int:
        """The plan's DP row count: drawn once with ``draw`` (and recorded), then repeated."""
        key = (grant_id, dataset, plan_digest)
        with self._write() as db:
            self._uses(db, key)
            cached = self._tally(db, key)[1]
            if cached is not None:
                return cached
            value = int(draw())
            db.execute(
                "UPDATE tallies SET dp_rows = ? WHERE grant_id=? AND dataset=? AND plan_digest=?",
                (value, *key),
            )
            return value

    def take_evaluation(self, grant_id: str, dataset: str, plan_digest: str) -> None:
        """Count one held-out evaluation before it runs; one per approved use of the plan."""
        key = (grant_id, dataset, plan_digest)
        with self._write() as db:
            _, uses = self._uses(db, key)
            done = self._tally(db, key)[2]
            if done >= uses:
                raise NodeBudgetRefusedError(
                    f"node {dataset!r} already released the held-out evaluation approved under "
                    f"grant {grant_id!r}; submit a new job"
                )
            db.execute(
                "UPDATE tallies SET evaluations = ? WHERE grant_id=? AND dataset=? AND "
                "plan_digest=?",
                (done + 1, *key),
            )

    def usage(self, grant_id: str, dataset: str) -> Usage:
        """Everything released under ``grant_id`` on ``dataset``, over every plan and run."""
        if not self.path.exists():
            return Usage()
        with self._read() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(steps), 0), COUNT(dp_rows), COALESCE(SUM(evaluations), 0) "
                "FROM tallies WHERE grant_id=? AND dataset=?",
                (grant_id, dataset),
            ).fetchone()
        return Usage(steps=int(row[0]), row_counts=int(row[1]), evaluations=int(row[2]))

    @staticmethod
    def _tally(db: sqlite3.Connection, key: tuple[str, str, str]) -> tuple[int, int | None, int]:
        db.execute(
            "INSERT OR IGNORE INTO tallies (grant_id, dataset, plan_digest) VALUES (?, ?, ?)",
            key,
        )
        row = db.execute(
            "SELECT steps, dp_rows, evaluations FROM tallies WHERE grant_id=? AND dataset=? "
            "AND plan_digest=?",
            key,
        ).fetchone()
        return int(row[0]), (None if row[1] is None else int(row[1])), int(row[2])

    # --- SQLite ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        new = not self.path.exists()
        if new:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 30000")
        db.executescript(_SCHEMA)
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise NodeStateError(f"cannot open the node store {self.path}: {exc}") from None
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise NodeStateError(f"the node store {self.path} failed: {exc}") from None
        finally:
            db.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise NodeStateError(f"cannot open the node store {self.path}: {exc}") from None
        try:
            yield db
        except sqlite3.Error as exc:
            raise NodeStateError(f"the node store {self.path} failed: {exc}") from None
        finally:
            db.close()


def plan_approvals(
    spec: JobSpec,
    grants: Mapping[str, str],
    rows_per_node: Mapping[str, int] | None = None,
    *,
    person_data: bool = True,
) -> dict[str, Approval]:
    """The approval of ``spec`` for each of its datasets, under the grant named for it: what a
    node is told once the authority has decided (and the ledger reserved) the job."""
    missing = [n for n in spec.nodes if not grants.get(n)]
    if missing:
        raise NodeApprovalError(f"no grant named for datasets {missing}")
    plan = plan_job(spec, rows_per_node)
    digest = spec.config_hash()
    return {
        name: Approval(
            grant_id=grants[name],
            dataset=name,
            plan_digest=digest,
            max_steps=plan.total_steps(name),
            sample_rate=p.sample_rate,
            noise_multiplier=p.noise_multiplier,
            person_data=person_data,
        )
        for name, p in plan.nodes.items()
    }


def _create_secret(path: Path) -> None:
    """Write a fresh key atomically: a temporary file (0600), then a hard link that fails if
    another process created the key first (that one wins; both then read the same key)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(SECRET_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise NodeStateError(f"cannot create the node secret {path} ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def node_state_dir(root: str | Path, node: str) -> Path:
    """Where node ``node`` keeps its state under ``root`` (one directory per node)."""
    if not node or "/" in node or "\\" in node or node in (".", ".."):
        raise NodeStateError(f"{node!r} is not a valid node name for a state directory")
    return Path(root) / node
