"""The hub's governance RPCs over real mTLS, a real node service and real SQLite: a department
registers a dataset (checked against the node's own metadata) and firms see it without a
restart; mock data; a query release fetched again by its firm only; a firm's own access
requests; revocations reach the node, which then refuses the grant itself; the hub reserves
the calibrated loss."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from hub_helpers import PURPOSE, make_pki, query_grant, real_node

from policies.authority import Authority
from policies.instructions import Instruction, sign_instruction
from policies.keys import load_signing_key
from policies.loss import PrivacyLoss
from policies.merkle import leaf_hash, verify_inclusion
from policies.treehead import verify_tree_head
from sandbox.catalog import Catalog
from sandbox.credentials import Principal
from sandbox.hub import HubServer, HubTLS, release_bytes, start
from sandbox.hub.nodes import NodeClient, NodeRoute
from sandbox.hub.regulator import tree_head_from_pb
from sandbox.hub.revocations import RevocationDelivery
from sandbox.node.server import RunningNode
from sandbox.node.service import REFUSAL_METADATA
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

SQL = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"


@dataclass
class _Setup:
    authority: Authority
    hub: HubServer
    node: RunningNode
    pki: Path
    manifest_yaml: str

    def channel(self, role: str, name: str, port: int | None = None) -> grpc.Channel:
        stem = self.pki / f"{role}-{name}"
        creds = grpc.ssl_channel_credentials(
            (self.pki / "ca.pem").read_bytes(),
            Path(f"{stem}-key.pem").read_bytes(),
            Path(f"{stem}.pem").read_bytes(),
        )
        return grpc.secure_channel(f"127.0.0.1:{port or self.hub.port}", creds)

    def firm(self, name: str = "acme") -> Any:
        return pb_grpc.FirmServiceStub(self.channel("firm", name))

    def department(self, name: str = "census") -> Any:
        return pb_grpc.DepartmentServiceStub(self.channel("department", name))

    def register(self, department: str = "census", **kw: Any) -> pb.RegisterDatasetResponse:
        args = {
            "manifest_yaml": self.manifest_yaml,
            "node": "node-1",
            "node_address": f"127.0.0.1:{self.node.port}",
            "epsilon_cap": 20.0,
            "delta_cap": 1e-6,
            **kw,
        }
        reply: pb.RegisterDatasetResponse = self.department(department).RegisterDataset(
            pb.RegisterDatasetRequest(**args), timeout=20
        )
        return reply


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pums_catalog_dir: Path) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("hub-governance")
    pki = make_pki(
        root,
        Principal("hub", "hub-1"),
        Principal("node", "node-1"),
        Principal("firm", "acme"),
        Principal("firm", "rival"),
        Principal("department", "census"),
        Principal("department", "tax"),
    )
    authority = Authority(root / "state")
    node = real_node(root, pki, authority, pums_catalog_dir)
    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(authority, Catalog({}, root), {}, tls=tls, node_timeout_s=10)  # no datasets yet
    manifest = (pums_catalog_dir / "pums.yaml").read_text(encoding="utf-8")
    try:
        yield _Setup(authority, hub, node, pki, manifest)
    finally:
        hub.stop()
        node.stop(None)


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def registered(setup: _Setup) -> pb.RegisterDatasetResponse:
    reply = setup.register()
    setup.authority.create_grant(query_grant("g-acme", "acme", delta=1e-6))
    return reply


def test_a_department_registers_a_dataset_and_firms_see_it_without_a_restart(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    assert registered.dataset.name == "pums" and registered.dataset.node == "node-1"
    entry = json.loads(setup.authority.log.entry(registered.log_index))
    assert entry["kind"] == "dataset" and entry["dataset"] == "pums"
    policy = setup.authority.registry.dataset("pums")
    assert (policy.department, policy.epsilon_cap) == ("census", 20.0)
    listed = setup.firm().ListDatasets(pb.ListDatasetsRequest(), timeout=5)
    assert [d.name for d in listed.datasets] == ["pums"]
    state = setup.authority.state_dir
    assert (state / "routes.db").stat().st_mode & 0o777 == 0o600
    # The same department registering again updates the caps.
    again = setup.register(epsilon_cap=25.0)
    assert again.log_index > registered.log_index
    assert setup.authority.registry.dataset("pums").epsilon_cap == 25.0
    # A second hub over the same state serves the stored route from its start.
    tls = HubTLS.from_files(
        setup.pki / "hub-hub-1.pem", setup.pki / "hub-hub-1-key.pem", setup.pki / "ca.pem"
    )
    other = start(setup.authority, Catalog({}, state), {}, tls=tls)
    try:
        stub = pb_grpc.FirmServiceStub(setup.channel("firm", "acme", other.port))
        described = stub.DescribeDataset(pb.DescribeDatasetRequest(dataset="pums"), timeout=5)
        assert described.dataset.node == "node-1"
    finally:
        other.stop()


def test_registration_refusals(setup: _Setup, registered: pb.RegisterDatasetResponse) -> None:
    before = setup.authority.log.size
    err = _refused(lambda: setup.register("tax"))  # census's dataset
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "belongs to department 'census'" in (err.details() or "")
    err = _refused(lambda: setup.register(node="node-9"))  # not the node's name
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "node-1" in (err.details() or "")
    changed = setup.manifest_yaml.replace("bounds: [0, 100]", "bounds: [0, 120]")
    err = _refused(lambda: setup.register(manifest_yaml=changed))  # not what the node serves
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "differently" in (err.details() or "")
    err = _refused(lambda: setup.register(manifest_yaml="name: [unclosed"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = _refused(lambda: setup.register(manifest_yaml="name: x\nfile: x.csv\n"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "manifest" in (err.details() or "") and "/tmp" not in (err.details() or "")
    err = _refused(lambda: setup.register(node_address="127.0.0.1:1"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    err = _refused(lambda: setup.register(epsilon_cap=0.0))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    as_firm = pb_grpc.DepartmentServiceStub(setup.channel("firm", "acme"))
    request = pb.RegisterDatasetRequest(manifest_yaml=setup.manifest_yaml)
    err = _refused(lambda: as_firm.RegisterDataset(request, timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED  # a firm is no department
    assert setup.authority.log.size == before  # nothing registered, nothing logged


def test_mock_data_is_synthetic_and_capped(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    stub = setup.firm()
    reply = stub.MockData(pb.MockDataRequest(dataset="pums", count=5000, seed=7), timeout=10)
    assert "synthetic" in reply.note
    assert {c.name for c in reply.columns} >= {"age", "sex", "income"}
    assert all(len(c.values) == 1000 for c in reply.columns)
    ages = next(c for c in reply.columns if c.name == "age").values
    assert all(0 <= v.int_value <= 100 for v in ages)
    default = stub.MockData(pb.MockDataRequest(dataset="pums"), timeout=10)
    assert len(default.columns[0].values) == 100
    err = _refused(lambda: stub.MockData(pb.MockDataRequest(dataset="tax"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_get_result_returns_the_release_to_its_firm_only(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    reply = setup.firm().SubmitQuery(
        pb.SubmitQueryRequest(sql=SQL, purpose=PURPOSE, epsilon=0.25), timeout=20
    )
    again = setup.firm().GetResult(pb.GetResultRequest(result_id=reply.result_id), timeout=5)
    assert again.WhichOneof("result") == "query"
    assert release_bytes(again.query) == release_bytes(reply.result)
    assert again.release_digest == reply.release_digest
    assert again.release_digest == hashlib.sha256(release_bytes(again.query)).hexdigest()
    assert (again.grant_id, again.log.index) == ("g-acme", reply.log.index)
    head = tree_head_from_pb(again.log.tree_head)
    verify_tree_head(head, setup.authority.public_key)
    verify_inclusion(
        again.log.index,
        head.size,
        leaf_hash(again.log.entry),
        list(again.log.inclusion_proof),
        head.root,
    )
    assert (setup.authority.state_dir / "releases.db").stat().st_mode & 0o777 == 0o600
    rival = setup.firm("rival")
    other = _refused(lambda: rival.GetResult(pb.GetResultRequest(result_id=reply.result_id)))
    unknown = _refused(lambda: rival.GetResult(pb.GetResultRequest(result_id="r-none")))
    assert other.code() == unknown.code() == grpc.StatusCode.NOT_FOUND
    assert (other.details() or "").replace(reply.result_id, "X") == (
        unknown.details() or ""
    ).replace("r-none", "X")


def test_the_hub_reserves_the_calibrated_loss(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    authority = setup.authority
    before = authority.remaining("g-acme", "pums").grant
    node_before = setup.node.service.guard.grant_spent("g-acme", "pums")
    # A counting query is pure DP: asked with a delta, it spends none; the hub reserves none.
    setup.firm().SubmitQuery(
        pb.SubmitQueryRequest(sql=SQL, purpose=PURPOSE, epsilon=0.5, delta=1e-7), timeout=20
    )
    after = authority.remaining("g-acme", "pums").grant
    assert after.epsilon_spent == pytest.approx(before.epsilon_spent + 0.5)
    assert after.delta_spent == before.delta_spent
    node_after = setup.node.service.guard.grant_spent("g-acme", "pums")
    assert node_after[0] - node_before[0] == 500_000 and node_after[1] == node_before[1]
    authority.verify_ledger()


def test_a_firm_lists_and_withdraws_its_own_requests(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    now = datetime.now(UTC)
    terms = pb.AccessTerms(
        datasets={
            "pums": pb.DatasetTerms(epsilon=1.0, columns={"*": pb.COLUMN_RULE_AGGREGATE_ONLY})
        },
        purpose=PURPOSE,
        legal_basis="contract",
        actions=[pb.ACTION_QUERY],
        epsilon_per_use=0.5,
        min_group_size=10,
        valid_from_ms=int(now.timestamp() * 1000),
        valid_until_ms=int((now + timedelta(days=5)).timestamp() * 1000),
    )
    asked = setup.firm().RequestAccess(pb.RequestAccessRequest(terms=terms), timeout=5).request
    mine = setup.firm().ListAccessRequests(pb.ListAccessRequestsRequest(), timeout=5)
    assert asked.request_id in [r.request_id for r in mine.requests]
    theirs = setup.firm("rival").ListAccessRequests(pb.ListAccessRequestsRequest(), timeout=5)
    assert not theirs.requests
    rival = setup.firm("rival")
    err = _refused(
        lambda: rival.WithdrawRequest(pb.WithdrawRequestRequest(request_id=asked.request_id))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    done = setup.firm().WithdrawRequest(
        pb.WithdrawRequestRequest(request_id=asked.request_id), timeout=5
    )
    assert done.request.state == pb.REQUEST_STATE_WITHDRAWN
    err = _refused(
        lambda: setup.firm().WithdrawRequest(
            pb.WithdrawRequestRequest(request_id=asked.request_id), timeout=5
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_unreachable_node_gets_the_revocation_later(
    setup: _Setup, registered: pb.RegisterDatasetResponse, caplog: pytest.LogCaptureFixture
) -> None:
    authority = setup.authority
    authority.create_grant(query_grant("g-later", "acme", delta=1e-6))
    authority.revoke_grant("g-later", "census", "ended early")
    nodes = NodeClient(
        grpc.ssl_channel_credentials(
            (setup.pki / "ca.pem").read_bytes(),
            (setup.pki / "hub-hub-1-key.pem").read_bytes(),
            (setup.pki / "hub-hub-1.pem").read_bytes(),
        ),
        timeout_s=2,
    )
    key = load_signing_key(authority.keys_dir, create=False)
    dead = NodeRoute("node-1", "127.0.0.1:1")
    live = NodeRoute("node-1", f"127.0.0.1:{setup.node.port}")
    routes = {"pums": dead}
    delivery = RevocationDelivery(authority, nodes, key, lambda: routes, setup.pki.parent / "d")
    try:
        caplog.set_level(logging.WARNING, logger="sandbox.hub")
        assert delivery.sync(dead) == 0
        assert "not delivered" in caplog.text
        assert "g-later" in [g.grant_id for g in delivery.pending(dead)]
        routes["pums"] = live
        assert delivery.sync(live) >= 1
        assert delivery.pending(live) == []
    finally:
        nodes.close()
    assert setup.node.service.guard.is_revoked("g-later")


def test_revocation_reaches_the_node_which_refuses_the_grant_itself(
    setup: _Setup, registered: pb.RegisterDatasetResponse
) -> None:
    authority = setup.authority
    # The grant's version before the revocation, for the forged instruction below.
    grant = authority.create_grant(query_grant("g-gone", "rival", delta=1e-6))
    err = _refused(
        lambda: setup.department("tax").Revoke(
            pb.RevokeRequest(grant_id="g-gone", reason="no"), timeout=5
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not setup.node.service.guard.is_revoked("g-gone")
    setup.department("census").Revoke(
        pb.RevokeRequest(grant_id="g-gone", reason="purpose ended"), timeout=10
    )
    assert setup.node.service.guard.is_revoked("g-gone")
    # An instruction for that grant, validly signed by the authority (forged by the test,
    # bypassing the hub's own checks), is refused by the node itself.
    instruction = Instruction.for_query(
        grant, "pums", SQL, PrivacyLoss(0.1), now_ms=int(time.time() * 1000)
    )
    signed = sign_instruction(load_signing_key(authority.keys_dir, create=False), instruction)
    stub = pb_grpc.NodeServiceStub(setup.channel("hub", "hub-1", setup.node.port))
    message = pb.SignedInstruction(
        instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.Execute(pb.ExecuteRequest(instruction=message), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (REFUSAL_METADATA, "revoked") in tuple(info.value.trailing_metadata() or ())
    # A notice with a bad signature is refused; only the hub may send one.
    bad = pb.SignedInstruction(instruction=b"x", signature=b"y" * 64, key_id=signed.key_id)
    err = _refused(lambda: stub.Revoke(pb.NodeRevokeRequest(notice=bad), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
