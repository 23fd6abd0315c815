"""Training over real Flower deployment processes: a SuperLink with TLS and SuperNode
authentication, two SuperNodes registered by key, each checking every message against the
signed instruction its node accepted, the sandbox FAB started with ``flwr run``. The
processes are started once for the module; the test that kills a node runs last."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.accounting import plan_job
from federation.job import JobSpec
from federation.node_authorization import NODE_NAME_KEY
from federation.result import TrainingResult
from policies.instructions import SignedInstruction
from sandbox.deployment.processes import CONNECTION, Federation, write_node_key
from sandbox.deployment.runner import run_deployed

from .departments import FEATURES, GRANT, Department, grant

NODES = ("north", "south")

pytestmark = pytest.mark.deployment  # real Flower processes: minutes on 2 cores


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": FEATURES,
        "label": "default",
        "nodes": NODES,
        "rounds": 1,
        "sample_rate": 0.5,
        "noise_multiplier": 2.0,
        "target_delta": 1e-6,
        "round_timeout_s": 60.0,
    }
    base.update(kw)
    return JobSpec(**base)


class _Setup:
    def __init__(self, fed: Federation, depts: dict[str, Department]) -> None:
        self.fed, self.depts = fed, depts

    def accept(self, spec: JobSpec) -> dict[str, SignedInstruction]:
        return {name: dept.accept(spec) for name, dept in self.depts.items()}

    def run(self, spec: JobSpec, signed: dict[str, SignedInstruction]) -> TrainingResult:
        return run_deployed(self.fed, spec, dict.fromkeys(NODES, GRANT), signed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Setup]:
    work = tmp_path_factory.mktemp("deploy")
    authority = Ed25519PrivateKey.generate()
    the_grant = grant(NODES)
    federation = Federation(work / "flower")
    federation.start_superlink()
    depts = {}
    for i, name in enumerate(NODES):
        depts[name] = Department.create(work / name, name, i, authority, the_grant)
        federation.start_supernode(name, depts[name].node_config)
    federation.wait_connected(len(NODES))
    try:
        yield _Setup(federation, depts)
    finally:
        federation.stop()


def test_signed_job_over_tls_and_node_auth_card_matches_node_tallies(setup: _Setup) -> None:
    spec = _spec(rounds=2)
    signed = setup.accept(spec)
    before = {n: d.steps() for n, d in setup.depts.items()}
    start = time.perf_counter()
    result = setup.run(spec, signed)
    wall = time.perf_counter() - start
    assert result.status == "completed", result.abort_reason
    assert result.model_card is not None
    plan = plan_job(spec)
    for card in result.model_card.nodes:
        dept = setup.depts[card.dataset]
        assert dept.steps() - before[card.dataset] == plan.total_steps(card.dataset)
        assert card.epsilon_spent == pytest.approx(result.spent[card.dataset].epsilon)
        assert card.rounds_participated == spec.rounds
        assert result.spent[card.dataset].epsilon <= plan.predicted[card.dataset].epsilon + 1e-9
    overheads = [round(r.overhead_s, 2) for r in result.rounds]
    print(f"deployment wall {wall:.2f} s, round overheads {overheads}")


def test_rounds_are_reported_while_the_job_runs(setup: _Setup) -> None:
    spec = _spec(rounds=2, seed=3)
    signed = setup.accept(spec)
    seen: list[tuple[int, float, int]] = []
    result = run_deployed(
        setup.fed,
        spec,
        dict.fromkeys(NODES, GRANT),
        signed,
        on_round=lambda m, failures: seen.append((m.round, time.monotonic(), len(failures))),
    )
    end = time.monotonic()
    assert result.status == "completed", result.abort_reason
    assert [r for r, _, _ in seen] == [1, 2]
    assert all(f == 0 for _, _, f in seen)
    # The first round was reported before the second round and the evaluation had run.
    assert seen[0][1] < end - 0.5, (seen, end)
    assert seen[1][2] == 0 and result.rounds[0].dp_loss is not None


_FOREIGN_PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "collector"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "someone-else"

[tool.flwr.app.components]
serverapp = "collector_app.apps:server_app"
clientapp = "collector_app.apps:client_app"

[tool.flwr.app.config]
out = ""
marker = ""
"""

_FOREIGN_APPS = """import json
import pathlib

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

server_app = ServerApp()


@server_app.main()
def main(grid, context):
    ids = list(grid.get_node_ids())
    asks = [Message(RecordDict({"q": ConfigRecord({})}), n, MessageType.QUERY) for n in ids]
    replies = list(grid.send_and_receive(asks, timeout=60))
    out = [r.error.reason if r.has_error() else "answered" for r in replies]
    pathlib.Path(context.run_config["out"]).write_text(json.dumps(out))


client_app = ClientApp()


@client_app.query()
def query(message, context):
    pathlib.Path(context.run_config["marker"]).write_text("the run's own code ran here")
    return Message(RecordDict({"rows": ConfigRecord({"n": 1})}), reply_to=message)
"""


def test_a_run_of_another_app_is_refused_and_its_code_never_runs_on_a_node(
    setup: _Setup, tmp_path: Path
) -> None:
    """Anyone who can start a run on the SuperLink sends its own FAB: the nodes' executors run
    only the installed sandbox ClientApp, so each answers with an error and none of the FAB's
    code runs on a department's machine."""
    fab = tmp_path / "fab"
    (fab / "collector_app").mkdir(parents=True)
    (fab / "pyproject.toml").write_text(_FOREIGN_PYPROJECT, encoding="utf-8")
    (fab / "collector_app" / "__init__.py").write_text("", encoding="utf-8")
    (fab / "collector_app" / "apps.py").write_text(_FOREIGN_APPS, encoding="utf-8")
    out, marker = tmp_path / "out.json", tmp_path / "marker"
    config = f'out="{out}" marker="{marker}"'
    setup.fed._cli(["run", str(fab), CONNECTION, "--run-config", config, "--format", "json"])
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    replies = json.loads(out.read_text(encoding="utf-8"))
    assert len(replies) == len(NODES), replies
    assert all("runs only the sandbox's training app" in r for r in replies), replies
    assert not marker.exists()


def test_an_executor_that_dies_is_started_again(setup: _Setup) -> None:
    node = setup.fed.nodes["north"]
    first = node.executor
    assert first is not None
    first.kill()
    deadline = time.monotonic() + 30
    while node.executor is first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert node.executor is not first and node.executor is not None
    assert node.executor.poll() is None
    spec = _spec(rounds=1, seed=9)
    result = setup.run(spec, setup.accept(spec))
    assert result.status == "completed", result.abort_reason


def test_job_other_than_the_signed_plan_is_refused_by_every_node(setup: _Setup) -> None:
    signed = setup.accept(_spec(seed=11))
    before = {n: d.steps() for n, d in setup.depts.items()}
    sent = _spec(seed=11, learning_rate=0.5)  # another config hash than the signed one
    result = setup.run(sent, signed)
    assert result.status == "aborted"
    assert len(result.failures) == len(NODES)
    assert all(f.stage == "describe" for f in result.failures)
    assert all("plan_mismatch" in f.reason for f in result.failures), result.failures
    assert {n: d.steps() for n, d in setup.depts.items()} == before  # nothing ran


def test_supernode_without_registered_key_is_refused(setup: _Setup) -> None:
    """The SuperLink does not activate a SuperNode whose key is not registered; the node keeps
    trying (its key may be registered later) and is never counted as connected."""
    fed = setup.fed
    key, _ = write_node_key(fed.workdir / "keys", "intruder")
    node = fed.start_supernode("intruder", {NODE_NAME_KEY: "intruder"}, key=key)
    log_file = fed.workdir / "logs" / "supernode-intruder.log"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
            if "failed to activate supernode" in text.lower():
                break
            time.sleep(0.2)
        assert "failed to activate supernode" in text.lower(), text[-2000:]
        assert fed.connected() == len(NODES)
    finally:
        node.stop()
        fed.nodes.pop("intruder", None)
    assert node.process.poll() is not None  # stopped for good: no restart after stop()


def test_node_killed_mid_job_completes_with_the_rest_and_each_is_charged(
    setup: _Setup, caplog: pytest.LogCaptureFixture
) -> None:
    """South's SuperNode is killed once it has trained in round 1: the job completes with
    north (min_nodes=1); north is charged exactly its tally; south at least what its own store
    tallied (the failed round's planned steps are charged). A second job that needs both nodes
    then fails with a clear error."""
    spec = _spec(rounds=3, min_nodes=1, round_timeout_s=25.0, seed=5)
    signed = setup.accept(spec)
    before = {n: d.steps() for n, d in setup.depts.items()}
    south = setup.depts["south"]
    killed = threading.Event()

    def kill_south_after_it_trained() -> None:
        deadline = time.monotonic() + 300
        while south.steps() == before["south"] and time.monotonic() < deadline:
            time.sleep(0.05)
        setup.fed.nodes["south"].stop()
        killed.set()

    killer = threading.Thread(target=kill_south_after_it_trained, daemon=True)
    killer.start()
    with caplog.at_level(logging.INFO, logger="sandbox.deployment.runner"):
        result = setup.run(spec, signed)
    killer.join(30)
    assert killed.is_set()
    assert result.status == "completed", result.abort_reason
    assert any(f.node == "south" for f in result.failures) or any(
        r.failed for r in result.rounds
    ), result.failures
    plan = plan_job(spec)
    north_steps = setup.depts["north"].steps() - before["north"]
    south_steps = south.steps() - before["south"]
    assert north_steps == plan.total_steps("north")
    assert result.spent["north"].epsilon <= plan.predicted["north"].epsilon + 1e-9
    assert 0 < south_steps < plan.total_steps("south")
    # South is charged at least what it trained (its store's tally), never less.
    assert result.model_card is not None
    charged = next(n for n in result.model_card.nodes if n.dataset == "south")
    assert charged.epsilon_spent == pytest.approx(result.spent["south"].epsilon)
    lines = [r.getMessage() for r in caplog.records]
    south_line = next(line for line in lines if "dataset south charged" in line)
    charged_steps = int(south_line.split("charged ")[1].split()[0])
    assert charged_steps >= south_steps
    assert "failed" in south_line
    assert any("node south failed" in line for line in lines), lines
    # Both nodes required, one dead: the job stops with a clear error.
    both = _spec(rounds=1, min_nodes=2, round_timeout_s=15.0, seed=6)
    signed = {"north": setup.depts["north"].accept(both), "south": south.sign(both)}
    stopped = setup.run(both, signed)
    assert stopped.status == "aborted"
    assert stopped.abort_reason is not None and "min_nodes=2" in stopped.abort_reason
