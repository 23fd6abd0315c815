"""The sandbox.v1 protocol: generated code is fresh, a real gRPC server serves it with health
and reflection, no message can carry row-level data, and messages follow the product's shapes."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
)
from grpc_health.v1 import (  # type: ignore[import-untyped,unused-ignore]
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped,unused-ignore]
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # type: ignore[import-untyped,unused-ignore]
    ProtoReflectionDescriptorDatabase,
)

from sandbox.protocol import PROTOCOL_VERSION, SERVICES
from sandbox.protocol.generate import PROTOCOL_DIR, generate, generated_files, main, stale_files
from sandbox.protocol.rules import reachable_messages, row_data_violations
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

# --- (a) the checked-in generated code is what protoc makes from the .proto file -------------


def test_checked_in_code_is_fresh() -> None:
    stale = stale_files()
    tools = importlib.metadata.version("grpcio-tools")
    assert not stale, (
        f"generated protocol code is stale: {stale}. Run `python -m sandbox.protocol.generate` "
        f"with grpcio-tools 1.81.1 (installed: {tools}) and commit the result."
    )


def test_generate_into_a_directory(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    for fresh, checked_in in zip(
        generated_files(tmp_path), generated_files(PROTOCOL_DIR), strict=True
    ):
        assert fresh.read_bytes() == checked_in.read_bytes()
    assert main(["a", "b"]) == 2
    assert generate(tmp_path / "again")[0].name == "sandbox_pb2.py"


def test_pinned_to_protobuf_6() -> None:
    for package in ("grpcio-tools", "grpcio-reflection", "grpcio-health-checking"):
        assert importlib.metadata.version(package).startswith("1.81."), package
    assert importlib.metadata.version("protobuf").split(".")[0] == "6"


# --- (b) a real server on loopback: health, reflection and one RPC --------------------------


class _Regulator(pb_grpc.RegulatorServiceServicer):
    """Answers SignedTreeHead with a fixed head; every other RPC is left unimplemented."""

    def SignedTreeHead(  # gRPC's method name
        self, request: pb.SignedTreeHeadRequest, context: Any
    ) -> pb.SignedTreeHeadResponse:
        head = pb.SignedTreeHead(
            size=3, root=bytes(32), timestamp_ms=1, key_id="k", signature=bytes(64)
        )
        return pb.SignedTreeHeadResponse(tree_head=head)


@pytest.fixture()
def channel() -> Iterator[Any]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_RegulatorServiceServicer_to_server(_Regulator(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            yield chan
    finally:
        server.stop(grace=None)


def test_health_is_serving(channel: Any) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", "sandbox.v1.RegulatorService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_sandbox_services(channel: Any) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert set(SERVICES) <= services
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    pool = descriptor_pool.DescriptorPool(database)
    firm = pool.FindServiceByName("sandbox.v1.FirmService")
    assert firm.methods_by_name["FollowJob"].server_streaming
    assert firm.file.package == PROTOCOL_VERSION


def test_one_rpc_round_trips(channel: Any) -> None:
    stub = pb_grpc.RegulatorServiceStub(channel)
    reply = stub.SignedTreeHead(pb.SignedTreeHeadRequest(), timeout=5)
    assert (reply.tree_head.size, reply.tree_head.root) == (3, bytes(32))
    with pytest.raises(grpc.RpcError) as err:
        stub.Entries(pb.EntriesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


# --- (c) no message can carry row-level data -------------------------------------------------


def test_no_message_carries_row_data() -> None:
    assert row_data_violations(pb.DESCRIPTOR) == []


def test_every_method_of_every_service_is_walked() -> None:
    services = pb.DESCRIPTOR.services_by_name
    assert tuple(s.full_name for s in services.values()) == SERVICES
    assert sum(len(s.methods) for s in services.values()) == 28
    reached = reachable_messages(pb.DESCRIPTOR)
    defined = {m.full_name for m in pb.DESCRIPTOR.message_types_by_name.values()}
    assert defined <= set(reached), f"messages no method uses: {sorted(defined - set(reached))}"


def _bad_file() -> Any:
    """A file breaking each rule: a Row message, `bytes rows`, a table of Values, an import."""
    pool = descriptor_pool.DescriptorPool()
    imported = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(imported)
    pool.AddSerializedFile(imported.SerializeToString())
    proto = descriptor_pb2.FileDescriptorProto(
        name="bad.proto", package="sandbox.v1", syntax="proto3", dependency=[imported.name]
    )
    field = descriptor_pb2.FieldDescriptorProto
    proto.message_type.add(name="Value")
    row = proto.message_type.add(name="Row")
    row.field.add(name="rows", number=1, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    table = proto.message_type.add(name="Table")
    table.field.add(
        name="cells",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=".sandbox.v1.Value",
        label=field.LABEL_REPEATED,
    )
    table.field.add(name="blob", number=2, type=field.TYPE_BYTES, label=field.LABEL_OPTIONAL)
    service = proto.service.add(name="LeakService")
    service.method.add(
        name="DumpRecords", input_type=".sandbox.v1.Table", output_type=".sandbox.v1.Row"
    )
    return pool.AddSerializedFile(proto.SerializeToString())


def test_the_rule_catches_row_shapes() -> None:
    found = row_data_violations(_bad_file())
    expected_starts = [
        "R1 message sandbox.v1.Row:",
        "R1 field sandbox.v1.Row.rows:",
        "R2 field sandbox.v1.Row.rows:",
        "R2 field sandbox.v1.Table.blob:",
        "R3 field sandbox.v1.Table.cells:",
        "R1 sandbox.v1.LeakService.DumpRecords:",
        "R4 file bad.proto:",
    ]
    for start in expected_starts:
        assert any(line.startswith(start) for line in found), (start, found)
    assert len(found) == len(expected_starts)


# --- messages follow the product's shapes ----------------------------------------------------


def _fields(message: Any) -> set[str]:
    return set(message.DESCRIPTOR.fields_by_name)


def test_messages_follow_the_product_shapes() -> None:
    from federation.job import JobSpec
    from federation.model_card import ClientLevelCard, ModelCard, NodeCard
    from federation.result import NodeFailure, RoundMetrics
    from policies.accounts import AccountStatus, Remaining
    from policies.grants import DatasetTerms, Grant
    from policies.treehead import SignedTreeHead
    from sandbox.catalog.manifest import ColumnSpec, Manifest, PrivacyUnit
    from sandbox.query.result import AggregateRelease, QueryResult
    from sandbox.service import GovernedResult

    def names(cls: Any) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    assert set(JobSpec.model_fields) == _fields(pb.JobSpec)
    assert names(ModelCard) == _fields(pb.ModelCard)
    assert names(NodeCard) == _fields(pb.NodeCard)
    assert names(ClientLevelCard) == _fields(pb.ClientLevelCard)
    assert names(RoundMetrics) == _fields(pb.RoundMetrics)
    assert names(NodeFailure) == _fields(pb.NodeFailure)
    assert names(SignedTreeHead) == _fields(pb.SignedTreeHead)
    assert names(AccountStatus) <= _fields(pb.BudgetAccount)
    assert names(Remaining) == _fields(pb.RemainingBudgetResponse)
    assert set(DatasetTerms.model_fields) == _fields(pb.DatasetTerms)
    grant = _fields(pb.Grant) | _fields(pb.AccessTerms)
    renamed = {"valid_from": "valid_from_ms", "valid_until": "valid_until_ms"}
    assert {renamed.get(n, n) for n in Grant.model_fields} <= grant
    assert set(PrivacyUnit.model_fields) == _fields(pb.PrivacyUnit)
    # How the node reads its own file (the CSV header a column comes from, the separator) is
    # not metadata a firm needs.
    assert set(ColumnSpec.model_fields) - {"source"} == _fields(pb.ColumnMetadata)
    reading = {"file", "path", "separator"}
    assert set(Manifest.model_fields) - reading <= _fields(pb.DatasetMetadata)
    # QueryResult.to_json: its "rows" become `outputs` + `groups` of released cells.
    result = QueryResult(
        sql="SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex",
        dataset="pums",
        outputs=["sex", "n"],
        group_by=["sex"],
        columns={"sex": [0, 1], "n": [512, 488]},
        aggregates={
            "n": AggregateRelease("n", "count", None, None, [], 1.0, [(509.0, 515.0), None])
        },
        epsilon_spent=1.0,
        delta_spent=0.0,
        confidence=0.95,
    )
    released = result.to_json()
    assert set(released) - {"rows"} <= _fields(pb.QueryResult)
    assert set(released["aggregates"][0]) <= _fields(pb.AggregateRelease)
    assert set(released["rows"][0]["n"]) == {"value", "ci95"} == _fields(pb.ReleasedCell)
    governed = GovernedResult(result, "g-1", 7, 8, [], {}).to_json()
    renamed = {"release_index": "index"}
    # The hub also sends the release entry's bytes, so a firm checks inclusion on its own.
    assert {renamed.get(k, k) for k in governed["log"]} == _fields(pb.LogProof) - {"entry"}
