"""The node enforces the signed minimum group size itself: groups whose noisy row count is
below it never leave the node, and the minimum cannot be edited in transit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.instructions import Instruction, SignedMessage, new_nonce, sign_instruction
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.node import RunningNode, start
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "pums"
SQL = "SELECT age, COUNT(*) AS n FROM pums GROUP BY age"  # public keys 0..100, 1,000 rows


@pytest.fixture(scope="module")
def authority() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def setup(
    authority: Ed25519PrivateKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningNode, Any]]:
    pki = tmp_path_factory.mktemp("pki") / "ca"
    ca = init_ca(pki)
    issue_certificate(ca, Principal("hub", "hub"))
    issue_certificate(ca, Principal("node", "jinan"))
    node = start(
        CATALOG,
        authority.public_key(),
        tmp_path_factory.mktemp("node-state"),
        ca=pki,
        cert=pki / "node-jinan.pem",
        key=pki / "node-jinan-key.pem",
    )
    node.service.guard.set_dataset_cap("pums", epsilon=100.0, delta=1e-6)
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "hub-hub-key.pem").read_bytes(),
        certificate_chain=(pki / "hub-hub.pem").read_bytes(),
    )
    try:
        with grpc.secure_channel(f"127.0.0.1:{node.port}", creds) as channel:
            yield node, pb_grpc.NodeServiceStub(channel)
    finally:
        node.stop(grace=None)


def _signed(key: Ed25519PrivateKey, min_group_size: int) -> SignedMessage:
    now = int(time.time() * 1000)
    instr = Instruction(
        kind="query",
        grant_id="g-groups",
        grant_version=1,
        grant_valid_until_ms=now + 3_600_000,
        grant_epsilon_cap=10_000_000,
        grant_delta_cap=0,
        firm="acme",
        dataset="pums",
        epsilon=1_000_000,
        delta=0,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
        nonce=new_nonce(),
        min_group_size=min_group_size,
        sql=SQL,
    )
    return sign_instruction(key, instr)


def _execute(stub: Any, signed: SignedMessage) -> pb.ExecuteResponse:
    message = pb.SignedInstruction(
        instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
    )
    reply: pb.ExecuteResponse = stub.Execute(pb.ExecuteRequest(instruction=message), timeout=30)
    return reply


def test_the_node_suppresses_groups_below_the_signed_minimum(
    setup: tuple[RunningNode, Any], authority: Ed25519PrivateKey
) -> None:
    _, stub = setup
    loose = _execute(stub, _signed(authority, 1)).query_result
    strict = _execute(stub, _signed(authority, 30)).query_result
    assert len(loose.groups) + loose.suppressed_groups == 101
    assert len(strict.groups) + strict.suppressed_groups == 101
    assert len(strict.groups) < len(loose.groups)
    assert strict.suppressed_groups > 0
    counts = [g.cells[1].value.int_value for g in strict.groups]
    assert counts and min(counts) >= 30  # every released group's noisy count meets it


def test_editing_the_minimum_in_transit_breaks_the_signature(
    setup: tuple[RunningNode, Any], authority: Ed25519PrivateKey
) -> None:
    node, stub = setup
    before = node.service.guard.dataset_spent("pums")
    signed = _signed(authority, 30)
    assert b'"min_group_size":30,' in signed.payload
    edited = SignedMessage(
        signed.payload.replace(b'"min_group_size":30,', b'"min_group_size":1,'),
        signed.signature,
        signed.key_id,
    )
    with pytest.raises(grpc.RpcError) as refused:
        _execute(stub, edited)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ("sandbox-refusal", "signature") in tuple(refused.value.trailing_metadata() or ())
    assert node.service.guard.dataset_spent("pums") == before  # nothing reserved
    assert _execute(stub, signed).query_result.suppressed_groups > 0  # the original still runs
