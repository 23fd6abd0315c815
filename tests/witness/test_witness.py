"""Department nodes witness the hub's tree heads: a real hub and two real nodes over mTLS.

Heads come back cosigned by both nodes; after more entries the next head is cosigned again
(through a consistency proof); a forked or shrunk head signed with the authority's own key is
refused by the node; only the hub may ask a node to witness; an export carries the
cosignatures and verifies with ``min_witnesses``.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hub_helpers import make_pki, query_grant, real_node
from typer.testing import CliRunner

from policies.authority import Authority
from policies.treehead import sign_tree_head
from policies.verify import VerificationError, verify_export
from sandbox.catalog import load_catalog
from sandbox.client import Profile, RegulatorClient
from sandbox.credentials import Principal
from sandbox.hub import HubServer, HubTLS, NodeRoute, start
from sandbox.hub.witnesses import CosignatureStore, HubWitnesses
from sandbox.node.cli import node_app
from sandbox.node.server import RunningNode
from sandbox.node.witness import WITNESS_KEY_FILE, tree_head_pb, witness_public_pem
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.service import dataset_policy

NODES = ("node-1", "node-2")


@dataclass
class _Setup:
    root: Path
    pki: Path
    authority: Authority
    hub: HubServer
    nodes: dict[str, RunningNode]

    def regulator(self) -> RegulatorClient:
        return RegulatorClient(
            Profile(
                hub=f"127.0.0.1:{self.hub.port}",
                ca=self.pki / "ca.pem",
                cert=self.pki / "regulator-csrc.pem",
                key=self.pki / "regulator-csrc-key.pem",
            )
        )

    def witness_keys(self) -> dict[str, Ed25519PublicKey]:
        out = {}
        for name in NODES:
            key = load_pem_public_key(witness_public_pem(self.root / name).encode())
            assert isinstance(key, Ed25519PublicKey)
            out[name] = key
        return out

    def node_stub(self, name: str, as_: str) -> pb_grpc.NodeServiceStub:
        """A stub to node ``name`` with the certificate ``as_`` (e.g. ``hub-hub-1``)."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=(self.pki / "ca.pem").read_bytes(),
            private_key=(self.pki / f"{as_}-key.pem").read_bytes(),
            certificate_chain=(self.pki / f"{as_}.pem").read_bytes(),
        )
        channel = grpc.secure_channel(f"127.0.0.1:{self.nodes[name].port}", creds)
        return pb_grpc.NodeServiceStub(channel)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pums_catalog_dir: Path) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("witness")
    pki = make_pki(
        root,
        Principal("hub", "hub-1"),
        *(Principal("node", n) for n in NODES),
        Principal("firm", "acme"),
        Principal("department", "dept-1"),
        Principal("regulator", "csrc"),
    )
    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(root / "state")
    authority.register_dataset(dataset_policy(catalog["pums"], epsilon_cap=20.0, delta_cap=1e-6))
    nodes = {n: real_node(root, pki, authority, pums_catalog_dir, n) for n in NODES}
    routes = {
        "pums": NodeRoute("node-1", f"127.0.0.1:{nodes['node-1'].port}"),
        "pums_copy": NodeRoute("node-2", f"127.0.0.1:{nodes['node-2'].port}"),
    }
    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(authority, catalog, routes, tls=tls, node_timeout_s=10)
    try:
        yield _Setup(root, pki, authority, hub, nodes)
    finally:
        hub.stop()
        for node in nodes.values():
            node.stop(None)


def test_heads_come_back_cosigned_by_both_nodes(setup: _Setup) -> None:
    with setup.regulator() as regulator:
        witnessed = regulator.witnessed_head()
        plain = regulator.tree_head()  # unchanged API: the head alone
    assert plain.size == witnessed.tree_head.size
    assert sorted(c.witness for c in witnessed.cosignatures) == list(NODES)
    assert witnessed.witnesses(setup.witness_keys()) == list(NODES)
    # The hub kept them for an export of that head.
    assert setup.hub.witnesses is not None
    kept = setup.hub.witnesses.cosignatures(witnessed.tree_head)
    assert sorted(kept, key=lambda c: c.witness) == list(witnessed.cosignatures)
    for name in NODES:
        key_file = setup.root / name / WITNESS_KEY_FILE
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_after_more_entries_the_next_head_is_cosigned_again(setup: _Setup) -> None:
    with setup.regulator() as regulator:
        first = regulator.witnessed_head()
        setup.authority.create_grant(query_grant("g-more", "acme"))
        second = regulator.witnessed_head()
    assert second.tree_head.size > first.tree_head.size
    assert second.witnesses(setup.witness_keys()) == list(NODES)
    for name in NODES:
        witnessing = setup.nodes[name].service.witnessing
        assert witnessing is not None
        assert witnessing.last_head() == second.tree_head


def test_a_hub_without_memory_or_with_a_wrong_one_asks_the_node(setup: _Setup) -> None:
    """First contact (a restarted hub) and a wrong remembered size both go through
    ReportMetadata's last witnessed head, then the node cosigns."""
    setup.authority.create_grant(query_grant("g-fresh", "acme"))
    fresh = HubWitnesses(
        setup.authority,
        setup.hub.nodes,
        lambda: setup.hub.firm.routes,
        CosignatureStore(setup.root / "fresh-witnesses.db"),
    )
    try:
        head = setup.authority.tree_head()
        assert [c.witness for c in fresh.collect(head)] == list(NODES)
        setup.authority.create_grant(query_grant("g-wrong", "acme"))
        fresh._last["node-1"] = 1  # a wrong memory: the node refuses, the hub asks and retries
        head = setup.authority.tree_head()
        assert [c.witness for c in fresh.collect(head)] == list(NODES)
    finally:
        fresh.close()


def test_a_node_that_is_down_adds_no_cosignature(
    setup: _Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nobody listens here once the socket is closed
    routes = dict(setup.hub.firm.routes)
    routes["elsewhere"] = NodeRoute("node-3", f"127.0.0.1:{closed}")
    witnesses = HubWitnesses(
        setup.authority,
        setup.hub.nodes,
        lambda: routes,
        CosignatureStore(setup.root / "down-witnesses.db"),
        timeout_s=1.0,
    )
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sandbox.hub.witnesses"):
            got = witnesses.collect(setup.authority.tree_head())
        assert time.monotonic() - started < 3.0
    finally:
        witnesses.close()
    assert [c.witness for c in got] == list(NODES)
    assert any("node-3" in r.getMessage() for r in caplog.records)


def test_a_forked_or_shrunk_head_is_refused_by_the_node(
    setup: _Setup, caplog: pytest.LogCaptureFixture
) -> None:
    with setup.regulator() as regulator:
        good = regulator.witnessed_head().tree_head
    key = setup.authority.log._key
    assert key is not None
    now = int(time.time() * 1000)
    stub = setup.node_stub("node-1", "hub-hub-1")
    bigger = setup.authority.log.size + 3
    forked = sign_tree_head(key, bigger, os.urandom(32), now)
    proof = setup.authority.consistency_proof(good.size)  # a real proof, to the real root
    same_size = sign_tree_head(key, good.size, os.urandom(32), now)
    shrunk = sign_tree_head(key, good.size - 1, os.urandom(32), now)
    cases = [
        (forked, proof, "does not extend"),
        (same_size, [], "a fork"),
        (shrunk, [], "shrank"),
    ]
    for head, path, why in cases:
        request = pb.WitnessRequest(
            tree_head=tree_head_pb(head), consistency_proof=path, from_size=good.size
        )
        with (
            caplog.at_level(logging.WARNING, logger="sandbox.node.service"),
            pytest.raises(grpc.RpcError) as err,
        ):
            stub.Witness(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert why in err.value.details()
        assert any(why in r.getMessage() for r in caplog.records)
    witnessing = setup.nodes["node-1"].service.witnessing
    assert witnessing is not None and witnessing.last_head() == good
    meta = stub.ReportMetadata(pb.ReportMetadataRequest(), timeout=5)
    assert meta.witness_name == "node-1" and meta.last_witnessed_head.size == good.size
    assert meta.witness_key_pem == witness_public_pem(setup.root / "node-1")


@pytest.mark.parametrize("caller", ["firm-acme", "department-dept-1"])
def test_only_the_hub_may_ask_a_node_to_witness(setup: _Setup, caller: str) -> None:
    head = setup.authority.tree_head()
    with pytest.raises(grpc.RpcError) as err:
        setup.node_stub("node-2", caller).Witness(
            pb.WitnessRequest(tree_head=tree_head_pb(head)), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only the hub" in err.value.details()


def test_an_export_carries_the_cosignatures_and_verifies_with_k_of_n(setup: _Setup) -> None:
    out = setup.root / "export.jsonl"
    with setup.regulator() as regulator:
        head = regulator.export(out, setup.authority.public_key)
    keys = setup.witness_keys()
    result = verify_export(out, setup.authority.public_key, witness_keys=keys, min_witnesses=2)
    assert result.tree_head == head and sorted(result.witnesses) == list(NODES)
    with pytest.raises(VerificationError, match="2 of the witnesses you trust .* 3 required"):
        verify_export(out, setup.authority.public_key, witness_keys=keys, min_witnesses=3)
    # A witness key the regulator does not hold counts for nothing.
    with pytest.raises(VerificationError, match="1 of the witnesses"):
        verify_export(
            out,
            setup.authority.public_key,
            witness_keys={"node-1": keys["node-1"]},
            min_witnesses=2,
        )


def test_witness_key_command_prints_the_public_key(setup: _Setup) -> None:
    runner = CliRunner()
    done = runner.invoke(node_app, ["witness-key", "--state", str(setup.root / "node-2")])
    assert done.exit_code == 0, done.output
    assert done.output == witness_public_pem(setup.root / "node-2")
    assert done.output.startswith("-----BEGIN PUBLIC KEY-----")
    missing = runner.invoke(node_app, ["witness-key", "--state", str(setup.root / "nowhere")])
    assert missing.exit_code == 2
    assert "error:" in missing.output and "start the node once" in missing.output
