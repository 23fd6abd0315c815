"""Departments for the deployment tests: a catalog, a node state with its guard and training
tasks, the authority's key and a grant; :meth:`Department.accept` signs a job's ``train``
instruction and has the node accept it, as ``NodeService.Execute`` does for the hub."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.accounting import plan_job
from federation.job import JobSpec
from federation.node_authorization import NODE_NAME_KEY
from federation.node_store import NodeStore, node_state_dir
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from policies.instructions import Instruction, SignedInstruction, sign_instruction
from policies.keys import public_key_pem
from policies.loss import PrivacyLoss
from sandbox.credentials import Principal
from sandbox.deployment.apps import AUTHORITY_KEY_KEY, CATALOG_DIR_KEY, NODE_STATE_KEY
from sandbox.node.service import NodeService
from sandbox.node.tasks import TRAINING_DIR, NodeTasks

FEATURES = ("age", "income")
GRANT = "G1"


def write_catalog(root: Path, name: str, offset: int, rows: int = 200) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data = [
        {"age": 18 + (i + offset) % 70, "income": 1000.0 + 37.0 * i, "default": (i + offset) % 2}
        for i in range(rows)
    ]
    with (root / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    (root / f"{name}.yaml").write_text(
        f"name: {name}\nfile: {name}.csv\nclassification: 内部\nrow_bound: 1000\ncolumns:\n"
        "  - {name: age, type: int, bounds: [18, 90]}\n"
        "  - {name: income, type: float, bounds: [0, 100000]}\n"
        "  - {name: default, type: int, categories: [0, 1]}\n",
        encoding="utf-8",
    )


def grant(nodes: tuple[str, ...]) -> Grant:
    now = datetime.now(UTC)
    columns = dict.fromkeys((*FEATURES, "default"), ColumnRule.AGGREGATE_ONLY)
    return Grant(
        grant_id=GRANT,
        firm="bank",
        purpose="credit risk research",
        legal_basis="contract",
        datasets={n: DatasetTerms(epsilon=50.0, delta=1e-3, columns=columns) for n in nodes},
        actions=frozenset({Action.TRAIN}),
        epsilon_per_use=50.0,
        min_group_size=1,
        models=frozenset({"logreg"}),
        valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=1),
        approved_by="official",
    )


def _no_rpc(_: object) -> Principal:
    raise PermissionError("no RPC is served here")


@dataclass
class Department:
    """One department's node: its dataset ``name`` under ``root``."""

    name: str
    root: Path
    authority: Ed25519PrivateKey
    grant: Grant

    @classmethod
    def create(
        cls, root: Path, name: str, offset: int, authority: Ed25519PrivateKey, grant: Grant
    ) -> Department:
        write_catalog(root / "catalog", name, offset)
        (root / "state").mkdir(parents=True, exist_ok=True)
        (root / "authority.pem").write_bytes(public_key_pem(authority.public_key()))
        dept = cls(name, root, authority, grant)
        dept.tasks().service.guard.set_dataset_cap(name, epsilon=100.0, delta=1e-2)
        return dept

    @property
    def node_config(self) -> dict[str, str]:
        return {
            NODE_NAME_KEY: self.name,
            CATALOG_DIR_KEY: str(self.root / "catalog"),
            NODE_STATE_KEY: str(self.root / "state"),
            AUTHORITY_KEY_KEY: str(self.root / "authority.pem"),
        }

    def tasks(self) -> NodeTasks:
        key = self.authority.public_key()
        service = NodeService.open(
            self.root / "catalog", self.root / "state", key, self.name, _no_rpc
        )
        return NodeTasks(service, key, self.root / "state")

    def sign(self, spec: JobSpec) -> SignedInstruction:
        plan = plan_job(spec)
        cost = plan.predicted[self.name]
        instruction = Instruction.for_job(
            "train",
            self.grant,
            self.name,
            spec.config_hash(),
            PrivacyLoss.spent(cost.epsilon, cost.delta),
            max_steps=plan.total_steps(self.name),
            now_ms=int(datetime.now(UTC).timestamp() * 1000),
        )
        return sign_instruction(self.authority, instruction)

    def accept(self, spec: JobSpec) -> SignedInstruction:
        """Sign the job's instruction for this dataset; the node admits and accepts it."""
        signed = self.sign(spec)
        tasks = self.tasks()
        admission = tasks.service.guard.admit(signed)
        tasks.accept(admission, b"", None)
        return signed

    def steps(self) -> int:
        """The DP-SGD steps this node tallied in its own store under the grant."""
        store = NodeStore(node_state_dir(self.root / "state" / TRAINING_DIR, self.name))
        return store.usage(GRANT, self.name).steps
