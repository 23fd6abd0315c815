"""The hub over real mTLS: a firm's query goes through the policy engine, a signed instruction,
the real department node service (sandbox.node: NodeGuard + QueryEngine on examples/pums) and
the ledger, and comes back with a log proof that verifies; callers are who their credential
says, and nothing else."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped,unused-ignore]
from hub_helpers import PURPOSE, make_pki, node_mode, query_grant, real_node, watch_min_group_sizes

from policies.authority import Authority
from policies.merkle import leaf_hash, verify_consistency, verify_inclusion
from policies.treehead import verify_tree_head
from sandbox.catalog import load_catalog
from sandbox.credentials import (
    ApiKeyStore,
    Principal,
    issue_api_key,
)
from sandbox.errors import HubError
from sandbox.hub import HubServer, HubTLS, NodeRoute, release_bytes, start
from sandbox.hub.regulator import tree_head_from_pb
from sandbox.node.server import RunningNode
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.service import dataset_policy

SQL = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"


@dataclass
class _Setup:
    authority: Authority
    hub: HubServer
    node: RunningNode
    pki: Path
    ca_pem: bytes
    firm_key: str
    regulator_key: str
    min_group_sizes: list[int]

    def files(self, role: str, name: str) -> tuple[bytes, bytes]:
        stem = self.pki / f"{role}-{name}"
        return Path(f"{stem}.pem").read_bytes(), Path(f"{stem}-key.pem").read_bytes()

    def mtls(self, role: str, name: str) -> grpc.Channel:
        cert, key = self.files(role, name)
        creds = grpc.ssl_channel_credentials(self.ca_pem, key, cert)
        return grpc.secure_channel(f"127.0.0.1:{self.hub.port}", creds)

    def keyed(self) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(self.ca_pem)
        return grpc.secure_channel(f"127.0.0.1:{self.hub.api_key_port}", creds)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pums_catalog_dir: Path) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("hub")
    pki = make_pki(
        root,
        Principal("hub", "hub-1"),
        Principal("node", "node-1"),
        Principal("firm", "acme"),
        Principal("firm", "rival"),
        Principal("regulator", "csrc"),
    )
    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(root / "state")
    authority.register_dataset(dataset_policy(catalog["pums"], epsilon_cap=20.0, delta_cap=1e-6))
    authority.create_grant(query_grant("g-acme", "acme"))
    authority.create_grant(query_grant("g-rival", "rival"))
    keys = ApiKeyStore(root / "keys.db")
    firm_key = issue_api_key(keys, "firm", "acme")
    regulator_key = issue_api_key(keys, "regulator", "csrc")
    node = real_node(root, pki, authority, pums_catalog_dir)
    node_port = node.port

    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(
        authority,
        catalog,
        {"pums": NodeRoute("node-1", f"127.0.0.1:{node_port}")},
        tls=tls,
        api_key_address="127.0.0.1:0",
        api_keys=keys,
        node_timeout_s=10,
    )
    try:
        yield _Setup(
            authority,
            hub,
            node,
            pki,
            (pki / "ca.pem").read_bytes(),
            firm_key,
            regulator_key,
            watch_min_group_sizes(node),
        )
    finally:
        hub.stop()
        node.stop(None)


def _query(stub: Any, metadata: Any = None, **kw: Any) -> pb.SubmitQueryResponse:
    args = {"sql": SQL, "purpose": PURPOSE, "epsilon": 0.25, **kw}
    reply: pb.SubmitQueryResponse = stub.SubmitQuery(
        pb.SubmitQueryRequest(**args), timeout=20, metadata=metadata
    )
    return reply


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _check_proof(authority: Authority, reply: pb.SubmitQueryResponse) -> dict[str, Any]:
    """The release entry of ``reply``, after checking its proof against the signed head."""
    head = tree_head_from_pb(reply.log.tree_head)
    verify_tree_head(head, authority.public_key)
    entry = authority.log.entry(reply.log.index)
    verify_inclusion(
        reply.log.index, head.size, leaf_hash(entry), list(reply.log.inclusion_proof), head.root
    )
    assert reply.log.tree_size == head.size
    body: dict[str, Any] = json.loads(entry)
    assert body["kind"] == "release"
    assert body["release_sha256"] == reply.release_digest
    assert reply.release_digest == hashlib.sha256(release_bytes(reply.result)).hexdigest()
    return body


def test_firm_with_certificate_gets_values_and_a_verifiable_proof(setup: _Setup) -> None:
    before = setup.authority.remaining("g-acme", "pums").epsilon
    with setup.mtls("firm", "acme") as channel:
        reply = _query(pb_grpc.FirmServiceStub(channel))
    assert reply.grant_id == "g-acme"
    assert list(reply.result.outputs) == ["sex", "n"]
    assert [g.cells[0].value.int_value for g in reply.result.groups] == [0, 1]
    assert all(g.cells[1].HasField("ci95") for g in reply.result.groups)
    body = _check_proof(setup.authority, reply)
    assert body["firm"] == "acme"
    after = setup.authority.remaining("g-acme", "pums").epsilon
    assert after == pytest.approx(before - 0.25)
    setup.authority.verify_ledger()


def test_firm_with_api_key_browses_queries_and_reads_its_budget(setup: _Setup) -> None:
    auth = (("authorization", f"Bearer {setup.firm_key}"),)
    with setup.keyed() as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        listed = stub.ListDatasets(pb.ListDatasetsRequest(), timeout=5, metadata=auth)
        assert [d.name for d in listed.datasets] == ["pums"]
        described = stub.DescribeDataset(
            pb.DescribeDatasetRequest(dataset="pums"), timeout=5, metadata=auth
        ).dataset
        assert described.node == "node-1"
        assert described.row_bound == 1_000_000
        assert {c.name for c in described.columns} >= {"age", "sex", "income"}
        missing = _refused(
            lambda: stub.DescribeDataset(
                pb.DescribeDatasetRequest(dataset="tax"), timeout=5, metadata=auth
            )
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        reply = _query(stub, auth, epsilon=0.1)
        _check_proof(setup.authority, reply)
        budget = stub.RemainingBudget(pb.RemainingBudgetRequest(), timeout=5, metadata=auth)
    left = setup.authority.remaining("g-acme", "pums")
    assert budget.grant.grant_id == "g-acme"
    assert budget.epsilon == pytest.approx(left.epsilon)
    assert budget.grant.committed == left.grant.committed


def test_no_credential_is_unauthenticated_and_logged(
    setup: _Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sandbox.hub")
    before = setup.authority.log.size
    with setup.keyed() as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        for metadata in (None, (("authorization", "Bearer sbx_0000000000000000_" + "a" * 43),)):
            err = _refused(lambda m=metadata: _query(stub, m))
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "key" in (err.details() or "") or "credential" in (err.details() or "")
    assert any("refused SubmitQuery" in r.getMessage() for r in caplog.records)
    assert setup.authority.log.size == before  # nothing was decided or charged
    # The mTLS port refuses a caller without a certificate in the handshake.
    creds = grpc.ssl_channel_credentials(setup.ca_pem)
    with grpc.secure_channel(f"127.0.0.1:{setup.hub.port}", creds) as channel:
        err = _refused(lambda: _query(pb_grpc.FirmServiceStub(channel)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_a_firm_cannot_read_the_regulator_service(setup: _Setup) -> None:
    with setup.mtls("firm", "acme") as channel:
        stub = pb_grpc.RegulatorServiceStub(channel)
        err = _refused(lambda: stub.SignedTreeHead(pb.SignedTreeHeadRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs the role regulator" in (err.details() or "")
    auth = (("authorization", f"Bearer {setup.firm_key}"),)
    with setup.keyed() as channel:
        stub = pb_grpc.RegulatorServiceStub(channel)
        err = _refused(lambda: stub.Entries(pb.EntriesRequest(), timeout=5, metadata=auth))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # ... and a regulator cannot submit a query.
    with setup.mtls("regulator", "csrc") as channel:
        err = _refused(lambda: _query(pb_grpc.FirmServiceStub(channel)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_regulator_verifies_heads_proofs_and_entries(setup: _Setup) -> None:
    with setup.mtls("firm", "acme") as channel:
        _query(pb_grpc.FirmServiceStub(channel), epsilon=0.1)
    key = setup.authority.public_key
    with setup.mtls("regulator", "csrc") as channel:
        stub = pb_grpc.RegulatorServiceStub(channel)
        first = tree_head_from_pb(stub.SignedTreeHead(pb.SignedTreeHeadRequest()).tree_head)
        verify_tree_head(first, key)
        proof = stub.InclusionProof(pb.InclusionProofRequest(index=1), timeout=5)
        head = tree_head_from_pb(proof.tree_head)
        verify_tree_head(head, key)
        verify_inclusion(1, head.size, leaf_hash(proof.entry), list(proof.audit_path), head.root)
        with setup.mtls("firm", "acme") as firm_channel:
            _query(pb_grpc.FirmServiceStub(firm_channel), epsilon=0.1)
        grown = stub.ConsistencyProof(pb.ConsistencyProofRequest(first=first.size), timeout=5)
        second = tree_head_from_pb(grown.tree_head)
        verify_tree_head(second, key)
        assert second.size > first.size
        verify_consistency(first.size, second.size, first.root, second.root, list(grown.proof))
        page = stub.Entries(pb.EntriesRequest(start=0, end=3), timeout=5)
        assert [e.index for e in page.entries] == [0, 1, 2] and page.next == 3
        assert json.loads(page.entries[0].entry)["kind"] == "policy"
        bad = _refused(lambda: stub.InclusionProof(pb.InclusionProofRequest(index=10**9)))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The API-key path works for a regulator too.
    auth = (("authorization", f"Bearer {setup.regulator_key}"),)
    with setup.keyed() as channel:
        reply = pb_grpc.RegulatorServiceStub(channel).SignedTreeHead(
            pb.SignedTreeHeadRequest(), timeout=5, metadata=auth
        )
    verify_tree_head(tree_head_from_pb(reply.tree_head), key)


def test_another_firms_grant_is_denied(setup: _Setup) -> None:
    rival_before = setup.authority.remaining("g-rival", "pums")
    with setup.mtls("firm", "acme") as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        err = _refused(lambda: _query(stub, grant_id="g-rival"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "denied" in (err.details() or "")
        err = _refused(
            lambda: stub.RemainingBudget(pb.RemainingBudgetRequest(grant_id="g-rival"), timeout=5)
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert setup.authority.remaining("g-rival", "pums") == rival_before
    denials = setup.authority.log.search(kind="decision", firm="acme", decision="deny")
    assert denials and denials[-1]["grant_id"] is None


def test_the_signed_minimum_group_size_is_the_decisions(setup: _Setup) -> None:
    with setup.mtls("firm", "acme") as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        default = _query(stub)  # the grant's minimum (5)
        assert setup.min_group_sizes[-1] == 5
        assert len(default.result.groups) == 2  # 486 and 514 rows
        strict = _query(stub, min_group_size=600)  # the firm's larger wish, signed
        assert setup.min_group_sizes[-1] == 600
        assert (len(strict.result.groups), strict.result.suppressed_groups) == (0, 2)
        _check_proof(setup.authority, strict)
        lower = _refused(lambda: _query(stub, min_group_size=2))  # below the grant's: denied
        assert lower.code() == grpc.StatusCode.PERMISSION_DENIED
    assert setup.min_group_sizes[-1] == 600  # nothing was sent for the denied one


def test_each_release_is_charged_once_and_the_ledger_matches_the_log(setup: _Setup) -> None:
    authority = setup.authority
    before = authority.remaining("g-acme", "pums").grant
    releases = len(authority.log.search(kind="release", firm="acme", limit=10_000))
    node_before = setup.node.service.guard.grant_spent("g-acme", "pums")
    with setup.mtls("firm", "acme") as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        digests = {_query(stub, epsilon=0.2).release_digest for _ in range(3)}
    after = authority.remaining("g-acme", "pums").grant
    assert len(digests) == 3
    assert after.committed == before.committed + 3
    assert after.pending == before.pending == 0
    assert after.epsilon_spent == pytest.approx(before.epsilon_spent + 0.6)
    assert len(authority.log.search(kind="release", firm="acme", limit=10_000)) == releases + 3
    node_after = setup.node.service.guard.grant_spent("g-acme", "pums")
    assert node_after[0] - node_before[0] == 600_000  # the node charged the same, itself
    authority.verify_ledger()


def test_not_released_is_refunded_and_a_silent_failure_stays_charged(setup: _Setup) -> None:
    authority = setup.authority
    before = authority.remaining("g-acme", "pums").grant
    with node_mode(setup.node, "refuse"), setup.mtls("firm", "acme") as channel:
        err = _refused(lambda: _query(pb_grpc.FirmServiceStub(channel)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "refunded" in (err.details() or "")
    refunded = authority.remaining("g-acme", "pums").grant
    assert refunded.epsilon_spent == pytest.approx(before.epsilon_spent)
    assert refunded.refunded == before.refunded + 1
    with node_mode(setup.node, "crash"), setup.mtls("firm", "acme") as channel:
        err = _refused(lambda: _query(pb_grpc.FirmServiceStub(channel)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "stays charged" in (err.details() or "")
    charged = authority.remaining("g-acme", "pums").grant
    assert charged.epsilon_spent == pytest.approx(before.epsilon_spent + 0.25)
    assert charged.pending == 0
    authority.verify_ledger()


def test_bad_sql_costs_nothing(setup: _Setup) -> None:
    before = setup.authority.log.size
    with setup.mtls("firm", "acme") as channel:
        stub = pb_grpc.FirmServiceStub(channel)
        err = _refused(lambda: _query(stub, sql="SELECT * FROM pums"))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        err = _refused(lambda: _query(stub, epsilon=float("nan")))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert setup.authority.log.size == before


def test_health_and_reflection(setup: _Setup) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # type: ignore[import-untyped,unused-ignore]
        ProtoReflectionDescriptorDatabase,
    )

    with setup.mtls("regulator", "csrc") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="sandbox.v1.FirmService"), timeout=5
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"sandbox.v1.FirmService", "sandbox.v1.RegulatorService"} <= services


def test_plaintext_only_on_loopback(setup: _Setup, pums_catalog_dir: Path) -> None:
    catalog = load_catalog(pums_catalog_dir)
    routes = {"pums": NodeRoute("node-1", "127.0.0.1:1")}
    with pytest.raises(HubError, match="--tls"):
        start(setup.authority, catalog, routes, tls=None)
    with pytest.raises(HubError, match="loopback"):
        start(setup.authority, catalog, routes, tls=None, insecure=True, address="0.0.0.0:0")
    hub = start(setup.authority, catalog, routes, tls=None, insecure=True)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{hub.port}") as channel:
            err = _refused(
                lambda: pb_grpc.FirmServiceStub(channel).ListDatasets(pb.ListDatasetsRequest())
            )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        hub.stop()
