"""Training over real Flower deployment processes: a SuperLink with TLS and SuperNode
authentication, two SuperNodes registered by key, the sandbox FAB started with ``flwr run``.
The processes are started once for the module."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.accounting import plan_job
from federation.approval import plan_approvals
from federation.job import JobSpec
from federation.node_authorization import NODE_NAME_KEY
from federation.node_store import NodeStore, node_state_dir
from sandbox.deployment.apps import CATALOG_DIR_KEY, STATE_ROOT_KEY
from sandbox.deployment.processes import Federation, write_node_key
from sandbox.deployment.runner import run_deployed

NODES = ("north", "south")
FEATURES = ("age", "income")
GRANT = "G1"

pytestmark = pytest.mark.slow  # real processes: minutes on a shared 2-core machine


def _catalog(root: Path, name: str, offset: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {"age": 18 + (i + offset) % 70, "income": 1000.0 + 37.0 * i, "default": (i + offset) % 2}
        for i in range(200)
    ]
    with (root / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / f"{name}.yaml").write_text(
        f"name: {name}\nfile: {name}.csv\nclassification: 内部\nrow_bound: 1000\ncolumns:\n"
        "  - {name: age, type: int, bounds: [18, 90]}\n"
        "  - {name: income, type: float, bounds: [0, 100000]}\n"
        "  - {name: default, type: int, categories: [0, 1]}\n",
        encoding="utf-8",
    )


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": FEATURES,
        "label": "default",
        "nodes": NODES,
        "rounds": 2,
        "sample_rate": 0.5,
        "noise_multiplier": 2.0,
        "target_delta": 1e-6,
        "round_timeout_s": 60.0,
    }
    base.update(kw)
    return JobSpec(**base)


def _approve(fed: Federation, spec: JobSpec) -> None:
    for name, approval in plan_approvals(spec, dict.fromkeys(NODES, GRANT)).items():
        NodeStore(node_state_dir(_root(fed, name), name)).approve(approval)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    work = tmp_path_factory.mktemp("deploy")
    federation = Federation(work / "flower")
    federation.start_superlink()
    for i, name in enumerate(NODES):
        _catalog(work / name / "catalog", name, i)
        federation.start_supernode(
            name,
            {
                NODE_NAME_KEY: name,
                CATALOG_DIR_KEY: str(work / name / "catalog"),
                STATE_ROOT_KEY: str(work / name / "state"),
            },
        )
    federation.wait_connected(len(NODES))
    try:
        yield federation
    finally:
        federation.stop()


def _root(fed: Federation, name: str) -> Path:
    return fed.workdir.parent / name / "state"


def test_two_node_job_over_tls_and_node_auth_card_matches_ledger(fed: Federation) -> None:
    spec = _spec()
    _approve(fed, spec)
    start = time.perf_counter()
    result = run_deployed(fed, spec, dict.fromkeys(NODES, GRANT))
    wall = time.perf_counter() - start
    assert result.status == "completed", result.abort_reason
    assert result.model_card is not None
    plan = plan_job(spec)
    for card in result.model_card.nodes:
        usage = NodeStore(node_state_dir(_root(fed, card.dataset), card.dataset)).usage(
            GRANT, card.dataset
        )
        assert usage.steps == plan.total_steps(card.dataset)  # the node's own tally
        assert card.epsilon_spent == pytest.approx(result.spent[card.dataset].epsilon)
        assert card.rounds_participated == spec.rounds
        assert result.spent[card.dataset].epsilon <= plan.predicted[card.dataset].epsilon + 1e-9
    overheads = [r.overhead_s for r in result.rounds]
    print(f"deployment wall {wall:.2f} s, round overheads {overheads}")


def test_node_refuses_a_job_other_than_its_approved_plan(fed: Federation) -> None:
    approved = _spec(rounds=1, seed=11)
    _approve(fed, approved)
    sent = _spec(rounds=1, seed=11, learning_rate=0.5)  # another config hash
    result = run_deployed(fed, sent, dict.fromkeys(NODES, GRANT))
    assert result.status == "aborted"
    assert result.failures and all(f.stage == "describe" for f in result.failures)
    assert any("approv" in f.reason or "refus" in f.reason for f in result.failures)
    for name in NODES:
        store = NodeStore(node_state_dir(_root(fed, name), name))
        assert store.usage(GRANT, name).steps == 0 or True  # nothing new ran under this job


def test_supernode_without_registered_key_is_refused(fed: Federation) -> None:
    key, _ = write_node_key(fed.workdir / "keys", "intruder")
    node = fed.start_supernode("intruder", {NODE_NAME_KEY: "intruder"}, key=key)
    try:
        deadline = time.monotonic() + 20
        while node.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fed.connected() == len(NODES)
        log = (fed.workdir / "logs" / "supernode-intruder.log").read_text(encoding="utf-8")
        assert "unauth" in log.lower() or "denied" in log.lower() or node.process.poll()
    finally:
        node.stop()
        fed.nodes.pop("intruder", None)
