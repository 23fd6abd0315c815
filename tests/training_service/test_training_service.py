"""A firm's DP training job through the services: a real hub and two real department nodes
(gRPC over mTLS, generated data), the job submitted, followed and fetched through the firm's
stub. Each node checks the signed plan itself and trains on its own rows; only DP-SGD weights
and DP metrics cross the wire."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import numpy as np
import pytest

from federation.accounting import plan_job
from federation.job import JobSpec
from federation.node_store import NodeStore, node_state_dir
from policies.authority import Authority, release_digest
from policies.grants import DatasetTerms, Grant
from policies.instructions import Instruction, sign_instruction
from policies.keys import load_signing_key
from sandbox.catalog import load_catalog
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.federated_task import tensor_array, tensor_pb
from sandbox.generate import generate
from sandbox.hub import HubServer, HubTLS, NodeRoute, start
from sandbox.hub.cards import model_card_pb, model_file, spec_pb
from sandbox.node.server import RunningNode
from sandbox.node.server import start as start_node
from sandbox.node.tasks import TRAINING_DIR
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.service import dataset_policy
from sandbox.training import categorical_sizes

NODES = ("jinan_enterprise", "qingdao_enterprise")
FEATURES = ("industry", "years_operating", "tax_arrears_months", "employees")
PURPOSE = "credit risk"
GRANT_EPSILON = 5.0


@dataclass
class _Setup:
    authority: Authority
    hub: HubServer
    nodes: dict[str, RunningNode]
    pki: Path
    spec: JobSpec

    def channel(self, role: str, name: str, port: int) -> grpc.Channel:
        stem = self.pki / f"{role}-{name}"
        creds = grpc.ssl_channel_credentials(
            (self.pki / "ca.pem").read_bytes(),
            Path(f"{stem}-key.pem").read_bytes(),
            Path(f"{stem}.pem").read_bytes(),
        )
        return grpc.secure_channel(f"127.0.0.1:{port}", creds)

    def firm(self, name: str) -> Any:
        return pb_grpc.FirmServiceStub(self.channel("firm", name, self.hub.port))

    def as_hub(self, dataset: str) -> Any:
        return pb_grpc.NodeServiceStub(self.channel("hub", "hub-1", self.nodes[dataset].port))


def _grant(firm: str, grant_id: str) -> Grant:
    now = datetime.now(UTC)
    columns = {c: "aggregate_only" for c in (*FEATURES, "default")}
    return Grant(
        grant_id=grant_id,
        firm=firm,
        purpose=PURPOSE,
        legal_basis="contract",
        datasets={
            n: DatasetTerms(epsilon=GRANT_EPSILON, delta=1e-4, columns=columns) for n in NODES
        },
        actions={"train"},
        epsilon_per_use=GRANT_EPSILON,
        min_group_size=1,
        models={"logreg"},
        valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=1),
        approved_by="official",
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("training-service")
    generate(root / "catalog", rows=1500, seed=3)
    catalog = load_catalog(root / "catalog")
    ca = init_ca(root / "pki")
    for principal in (
        Principal("hub", "hub-1"),
        Principal("node", "jinan"),
        Principal("node", "qingdao"),
        Principal("firm", "bank"),
        Principal("firm", "rival"),
    ):
        issue_certificate(ca, principal)
    pki = root / "pki"
    authority = Authority(root / "hub-state")
    for name in NODES:
        authority.register_dataset(dataset_policy(catalog[name], epsilon_cap=10.0, delta_cap=1e-3))
    authority.create_grant(_grant("bank", "T1"))
    nodes: dict[str, RunningNode] = {}
    for dataset, name in zip(NODES, ("jinan", "qingdao"), strict=True):
        node = start_node(
            root / "catalog",
            authority.public_key,
            root / f"node-{name}",
            ca=pki,
            cert=pki / f"node-{name}.pem",
            key=pki / f"node-{name}-key.pem",
            warm=False,
        )
        node.service.guard.set_dataset_cap(dataset, epsilon=10.0, delta=1e-3)
        nodes[dataset] = node
    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    routes = {d: NodeRoute(n.service.node, f"127.0.0.1:{n.port}") for d, n in nodes.items()}
    hub = start(authority, catalog, routes, tls=tls, node_timeout_s=30)
    spec = JobSpec(
        model="logreg",
        features=FEATURES,
        label="default",
        nodes=NODES,
        rounds=2,
        sample_rate=0.2,
        learning_rate=0.5,
        target_epsilon=2.0,
        target_delta=1e-9,
        categorical=categorical_sizes(catalog, NODES[0], FEATURES),
        min_nodes=2,
        seed=1,
    )
    try:
        yield _Setup(authority, hub, nodes, pki, spec)
    finally:
        hub.stop()
        for node in nodes.values():
            node.stop(grace=None)


@pytest.fixture(scope="module")
def finished(setup: _Setup) -> tuple[pb.SubmitTrainingJobResponse, list[pb.JobEvent]]:
    firm = setup.firm("bank")
    submitted = firm.SubmitTrainingJob(
        pb.SubmitTrainingJobRequest(spec=spec_pb(setup.spec), purpose=PURPOSE), timeout=60
    )
    events = list(firm.FollowJob(pb.FollowJobRequest(job_id=submitted.job_id), timeout=120))
    return submitted, events


def test_job_streams_rounds_then_finishes_and_is_charged_what_the_card_says(
    setup: _Setup, finished: tuple[pb.SubmitTrainingJobResponse, list[pb.JobEvent]]
) -> None:
    submitted, events = finished
    spec = setup.spec
    assert submitted.config_hash == spec.config_hash() and submitted.grant_id == "T1"
    plan = plan_job(spec)
    for dataset in NODES:
        assert submitted.reserved[dataset].epsilon == pytest.approx(plan.predicted[dataset].epsilon)
    reservation = json.loads(setup.authority.log.entry(submitted.log_index))
    assert reservation["kind"] == "reservation" and reservation["dataset"] in NODES
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["accepted", "round", "round", "finished"], events
    assert [e.round.round for e in events if e.HasField("round")] == [1, 2]
    done = events[-1].finished
    assert done.status == "completed", done.abort_reason
    card = {n.dataset: n for n in done.model_card.nodes}
    for dataset in NODES:
        # The ledger charged exactly the card's epsilon on each dataset.
        charged = GRANT_EPSILON - setup.authority.remaining("T1", dataset).epsilon
        assert charged == pytest.approx(card[dataset].epsilon_spent)
        assert done.spent[dataset].epsilon == pytest.approx(card[dataset].epsilon_spent)
        # Each node's own stores moved: DP-SGD steps and evaluation, and its guard's spend.
        node = setup.nodes[dataset]
        store = NodeStore(node_state_dir(node.service.guard.state_dir / TRAINING_DIR, dataset))
        usage = store.usage("T1", dataset)
        assert usage.steps == plan.total_steps(dataset) and usage.evaluations == 1
        spent = node.service.guard.grant_spent("T1", dataset)
        assert spent.epsilon / 1e6 == pytest.approx(plan.predicted[dataset].epsilon, abs=1e-6)
    # The release is in the log, and the firm can fetch the model and check its digest.
    entry = json.loads(done.log.entry)
    assert entry["kind"] == "release" and entry["firm"] == "bank"
    fetched = setup.firm("bank").GetResult(
        pb.GetResultRequest(result_id=done.result_id), timeout=10
    )
    weights = {
        t.name: tensor_array(t)
        for t in pb.TaskTensors.FromString(fetched.training.model_weights).tensors
    }
    assert weights and all(np.isfinite(w).all() for w in weights.values())
    assert fetched.training.model_card == done.model_card
    assert entry["release_sha256"] == fetched.release_digest
    # The logged digest is the SHA-256 of the model file the firm downloads.
    assert fetched.release_digest == release_digest(fetched.training.model_weights)
    assert fetched.training.model_weights == model_file(weights)
    jobs = setup.firm("bank").ListJobs(pb.ListJobsRequest(), timeout=10).jobs
    assert [(j.job_id, j.status, j.rounds_done) for j in jobs] == [
        (submitted.job_id, "completed", 2)
    ]


def test_another_firm_cannot_follow_fetch_or_list_the_job(
    setup: _Setup, finished: tuple[pb.SubmitTrainingJobResponse, list[pb.JobEvent]]
) -> None:
    submitted, events = finished
    rival = setup.firm("rival")
    with pytest.raises(grpc.RpcError) as info:
        list(rival.FollowJob(pb.FollowJobRequest(job_id=submitted.job_id), timeout=10))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        rival.GetResult(pb.GetResultRequest(result_id=events[-1].finished.result_id), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert list(rival.ListJobs(pb.ListJobsRequest(), timeout=10).jobs) == []
    # Nor can it train under the bank's grant: no grant of its own, denied, nothing reserved.
    with pytest.raises(grpc.RpcError) as info:
        rival.SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=spec_pb(setup.spec), purpose=PURPOSE), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _signed_plan(setup: _Setup, spec: JobSpec, dataset: str) -> pb.SignedInstruction:
    authority = setup.authority
    plan = plan_job(spec)
    key = load_signing_key(authority.keys_dir, create=False)
    from policies.loss import PrivacyLoss

    cost = plan.predicted[dataset]
    instruction = Instruction.for_job(
        "train",
        authority.registry.grant("T1"),
        dataset,
        spec.config_hash(),
        PrivacyLoss.spent(cost.epsilon, cost.delta),
        max_steps=plan.total_steps(dataset),
        now_ms=int(datetime.now(UTC).timestamp() * 1000),
    )
    signed = sign_instruction(key, instruction)
    return pb.SignedInstruction(
        instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
    )


def _task(spec: JobSpec, grant: str = "T1", kind: str = "query") -> pb.FederatedTask:
    task = pb.FederatedTask(message_type=kind, group_id="1")
    values = task.configs["config"].values
    values["job"].string_value = spec.canonical_json()
    values["rows"].string_value = "{}"
    values["grants"].string_value = json.dumps(dict.fromkeys(spec.nodes, grant))
    return task


def test_node_refuses_tasks_outside_the_signed_accepted_plan(
    setup: _Setup, finished: tuple[pb.SubmitTrainingJobResponse, list[pb.JobEvent]]
) -> None:
    dataset = NODES[0]
    node = setup.as_hub(dataset)
    signed = _signed_plan(setup, setup.spec, dataset)
    # Not accepted yet (never sent through Execute): refused, nothing runs.
    with pytest.raises(grpc.RpcError) as info:
        node.RunTask(pb.RunTaskRequest(instruction=signed, task=_task(setup.spec)), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not accepted" in info.value.details()
    accepted = node.Execute(pb.ExecuteRequest(instruction=signed), timeout=10)
    assert accepted.training_plan.config_hash == setup.spec.config_hash()
    before = setup.nodes[dataset].service.guard.grant_spent("T1", dataset)
    # The hub sends another plan (a larger learning rate) under the accepted instruction.
    other = setup.spec.model_copy(update={"learning_rate": 5.0})
    for task in (
        _task(other),
        _task(setup.spec, grant="T2"),
        _task(setup.spec, kind="train"),  # train without weights
    ):
        with pytest.raises(grpc.RpcError) as info:
            node.RunTask(pb.RunTaskRequest(instruction=signed, task=task), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, task
        assert "differs from the plan signed" in info.value.details()
    # The signed plan itself runs (a DP row count), and only DP metrics and the name return.
    reply = node.RunTask(
        pb.RunTaskRequest(instruction=signed, task=_task(setup.spec)), timeout=30
    ).reply
    assert not reply.error and set(reply.metrics["metrics"].values) == {"dp-rows"}
    assert set(reply.configs) == {"node"} and not reply.tensors
    assert setup.nodes[dataset].service.guard.grant_spent("T1", dataset) == before


def test_tensors_cross_the_wire_typed_and_little_endian() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = tensor_pb("w", array)
    assert tensor.data == array.astype("<f4").tobytes() and list(tensor.shape) == [2, 3]
    assert (tensor_array(tensor) == array).all()
    from sandbox.errors import TaskFormatError

    with pytest.raises(TaskFormatError):
        tensor_pb("u", np.zeros(2, dtype=np.uint8))
    with pytest.raises(TaskFormatError):
        tensor_array(pb.Tensor(name="w", shape=[3], dtype="float32", data=b"\0" * 8))
    assert model_card_pb is not None


def test_a_node_refusing_the_plan_stops_the_job_and_only_its_dataset_is_refunded(
    setup: _Setup, finished: tuple[pb.SubmitTrainingJobResponse, list[pb.JobEvent]]
) -> None:
    accepting, refusing = NODES[1], NODES[0]
    spec = setup.spec.model_copy(update={"nodes": (accepting, refusing)})  # asked in this order
    guard = setup.nodes[refusing].service.guard
    spent = guard.dataset_spent(refusing)
    guard.set_dataset_cap(refusing, epsilon=max(spent.epsilon / 1e6, 1e-3), delta=1e-3)  # full
    left = {d: setup.authority.remaining("T1", d).epsilon for d in NODES}
    try:
        with pytest.raises(grpc.RpcError) as info:
            setup.firm("bank").SubmitTrainingJob(
                pb.SubmitTrainingJobRequest(spec=spec_pb(spec), purpose=PURPOSE), timeout=60
            )
    finally:
        guard.set_dataset_cap(refusing, epsilon=10.0, delta=1e-3)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refused the plan" in info.value.details()
    predicted = plan_job(spec).predicted
    # The node that accepted kept the spend, so the ledger charges it; the other is refunded.
    after = {d: setup.authority.remaining("T1", d).epsilon for d in NODES}
    assert after[accepting] == pytest.approx(left[accepting] - predicted[accepting].epsilon)
    assert after[refusing] == pytest.approx(left[refusing])
    assert [j.status for j in setup.firm("bank").ListJobs(pb.ListJobsRequest()).jobs] == [
        "completed"
    ]


def test_a_job_whose_classes_miss_a_label_category_is_refused_and_costs_nothing(
    setup: _Setup,
) -> None:
    """The label's declared categories (public metadata) are checked before any budget is
    reserved: a node would refuse a row whose label is not among the job's classes."""
    features = tuple(f for f in setup.spec.features if f != "industry")
    categorical = {k: v for k, v in setup.spec.categorical.items() if k != "industry"}
    spec = setup.spec.model_copy(
        update={
            "label": "industry",
            "classes": ("A", "B", "C"),
            "features": features,
            "categorical": categorical,
        }
    )
    left = {d: setup.authority.remaining("T1", d).epsilon for d in NODES}
    with pytest.raises(grpc.RpcError) as info:
        setup.firm("bank").SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=spec_pb(spec), purpose=PURPOSE), timeout=60
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    assert "leave out" in info.value.details()
    assert {d: setup.authority.remaining("T1", d).epsilon for d in NODES} == left
