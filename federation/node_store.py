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

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from federation.approval import Approval, plan_approvals
from federation.errors import NodeApprovalError, NodeBudgetRefusedError, NodeStateError
from federation.node_db import read_transaction, write_transaction
from federation.node_secret import SECRET_BYTES, SECRET_FILE, node_secret

__all__ = [
    "SECRET_BYTES",
    "SECRET_FILE",
    "STORE_FILE",
    "Approval",
    "NodeStore",
    "Usage",
    "node_state_dir",
    "plan_approvals",
]

STORE_FILE = "node.db"


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
        """The node's HMAC key (see :mod:`federation.node_secret`)."""
        return node_secret(self.directory)

    # --- approvals ---------------------------------------------------------------------------

    def approve(self, approval: Approval) -> None:
        """Record that the authority approved ``approval`` (one more use of that plan)."""
        with write_transaction(self.path) as db:
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
        with write_transaction(self.path) as db:
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
        with read_transaction(self.path) as db:
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
        with write_transaction(self.path) as db:
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
        with write_transaction(self.path) as db:
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
        with write_transaction(self.path) as db:
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
        with read_transaction(self.path) as db:
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


def node_state_dir(root: str | Path, node: str) -> Path:
    """Where node ``node`` keeps its state under ``root`` (one directory per node)."""
    if not node or "/" in node or "\\" in node or node in (".", ".."):
        raise NodeStateError(
            f"{node!r} is not a valid node name for a state directory; use the dataset id"
        )
    return Path(root) / node
