"""No RPC returns row-level data: every method of every service, called on live services.

A real hub and two real department nodes (gRPC over mTLS on loopback, generated data) serve a
whole governed story through the SDK: departments register their datasets, a firm browses,
asks for mock data, requests access (approved, amended, refused, withdrawn), queries, trains,
follows and fetches its job, reads its budget and results, a department revokes, a regulator
reads heads, proofs and entries. Every servicer method of the four services (firm,
department, regulator on the hub; node service on the nodes) is wrapped to keep what it
returned. The test then checks

* that every method of every service in the sandbox.v1 descriptor answered at least once
  (so a new RPC fails this test until the story exercises it), and
* that no answer contains a row of the nodes' data: no enterprise id (the identity column) and
  no exact value of a continuous column (its 8-byte IEEE encoding, as protobuf writes a double,
  or its decimal text) appears in any serialized answer.
"""

from __future__ import annotations

import shutil
import struct
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from policies.authority import Authority
from sandbox.catalog import Catalog, load_catalog
from sandbox.client import DepartmentClient, FirmClient, Profile, RegulatorClient
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.errors import ClientError
from sandbox.generate import generate
from sandbox.hub import HubTLS, start
from sandbox.hub.department import DepartmentService
from sandbox.hub.firm import FirmService
from sandbox.hub.regulator import RegulatorService
from sandbox.node.server import start as start_node
from sandbox.node.service import NodeService
from sandbox.protocol.v1 import sandbox_pb2 as pb

CITIES = {"jinan": "jinan_enterprise", "qingdao": "qingdao_enterprise"}
SERVICERS = {
    "sandbox.v1.FirmService": FirmService,
    "sandbox.v1.DepartmentService": DepartmentService,
    "sandbox.v1.RegulatorService": RegulatorService,
    "sandbox.v1.NodeService": NodeService,
}
CONTINUOUS = ("registered_capital", "annual_revenue", "tax_paid", "avg_contribution_base")
FEATURES = ("industry", "employees", "years_operating", "tax_arrears_months")
PURPOSE = "credit risk research"


def _recording(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[bytes]]
) -> None:  # wrap every servicer method to keep its serialized answers
    for service_name, cls in SERVICERS.items():
        service = pb.DESCRIPTOR.services_by_name[service_name.split(".")[-1]]
        for method in service.methods:
            key = f"{service.name}.{method.name}"
            original = getattr(cls, method.name)

            def wrapper(
                self: Any, request: Any, context: Any, _o: Any = original, _k: str = key
            ) -> Any:
                reply = _o(self, request, context)
                if isinstance(reply, Iterator):
                    return _stream(reply, answers[_k])
                answers[_k].append(reply.SerializeToString())
                return reply

            monkeypatch.setattr(cls, method.name, wrapper)


def _stream(replies: Iterator[Any], into: list[bytes]) -> Iterator[Any]:
    for reply in replies:
        into.append(reply.SerializeToString())
        yield reply


def _terms(datasets: dict[str, Any], action: str, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {  # extra overrides the defaults
        "datasets": datasets,
        "purpose": PURPOSE,
        "legal_basis": "contract",
        "actions": [action],
        "min_group_size": 5,
        "epsilon_per_use": 1.0,
        "valid_from": now - timedelta(minutes=5),
        "valid_until": now + timedelta(days=30),
    } | extra


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, list[bytes]], Path]]:
    root = tmp_path_factory.mktemp("live")
    generate(root / "all", rows=400, seed=11)
    ca = init_ca(root / "pki")
    pki = root / "pki"
    parties = [Principal("hub", "hub-1"), Principal("firm", "bank")]
    parties += [Principal("regulator", "csrc")]
    for city in CITIES:
        parties += [Principal("node", city), Principal("department", f"{city}-data-bureau")]
    for principal in parties:
        issue_certificate(ca, principal)

    def profile(role: str, name: str, port: int) -> Profile:
        stem = pki / f"{role}-{name}"
        return Profile(
            hub=f"127.0.0.1:{port}",
            ca=pki / "ca.pem",
            cert=Path(f"{stem}.pem"),
            key=Path(f"{stem}-key.pem"),
        )

    answers: dict[str, list[bytes]] = defaultdict(list)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _recording(monkeypatch, answers)
        authority = Authority(root / "hub-state")
        nodes = {}
        for city, dataset in CITIES.items():
            catalog_dir = root / f"catalog-{city}"
            catalog_dir.mkdir()
            for suffix in (".yaml", ".parquet"):
                shutil.copy(root / "all" / f"{dataset}{suffix}", catalog_dir)
            node = start_node(
                catalog_dir,
                authority.public_key,
                root / f"node-{city}",
                ca=pki,
                cert=pki / f"node-{city}.pem",
                key=pki / f"node-{city}-key.pem",
                warm=False,
            )
            node.service.guard.set_dataset_cap(dataset, epsilon=20.0, delta=1e-3)
            nodes[city] = node
        tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
        hub = start(authority, Catalog({}, root), {}, tls=tls, node_timeout_s=60)
        try:
            _play(hub.port, profile, nodes, root)
            yield answers, root / "all"
        finally:
            hub.stop()
            for node in nodes.values():
                node.stop(grace=None)


def _play(port: int, profile: Any, nodes: dict[str, Any], root: Path) -> None:
    departments = {
        c: DepartmentClient(profile("department", f"{c}-data-bureau", port)) for c in CITIES
    }
    firm = FirmClient(profile("firm", "bank", port))
    regulator = RegulatorClient(profile("regulator", "csrc", port))
    for city, dataset in CITIES.items():
        departments[city].register(
            root / "all" / f"{dataset}.yaml",
            node=city,
            node_address=f"127.0.0.1:{nodes[city].port}",
            epsilon_cap=20.0,
            delta_cap=1e-3,
        )
    assert {d.name for d in firm.datasets()} == set(CITIES.values())
    firm.describe(CITIES["jinan"])
    firm.mock(CITIES["jinan"], count=5)
    # Queries: approved by jinan, amended by qingdao.
    columns = {"*": "aggregate_only", "employees": "aggregate_only", "industry": "group_by"}
    asked = {d: {"epsilon": 5.0, "columns": columns} for d in CITIES.values()}
    request = firm.request_access(_terms(asked, "query", epsilon_per_use=2.0))
    assert request.request_id in {r.request_id for r in departments["jinan"].pending()}
    departments["jinan"].approve(request.request_id, note="fine")
    narrower = {"epsilon": 4.0, "columns": {"*": "aggregate_only", "industry": "group_by"}}
    done = departments["qingdao"].amend(
        request.request_id, CITIES["qingdao"], narrower, "employees stays here"
    )
    assert done.request.grant is not None
    grant = done.request.grant.grant_id
    # A refused and a withdrawn request.
    refused = firm.request_access(
        _terms({CITIES["qingdao"]: {"epsilon": 1.0, "columns": columns}}, "query")
    )
    departments["qingdao"].refuse(refused.request_id, "purpose not accepted")
    pending = firm.request_access(
        _terms({CITIES["jinan"]: {"epsilon": 1.0, "columns": columns}}, "query")
    )
    firm.withdraw(pending.request_id)
    assert {r.state for r in firm.requests()} >= {"granted", "refused", "withdrawn"}
    answer = firm.query(
        "SELECT industry, COUNT(*) AS n, AVG(employees) AS e FROM jinan_enterprise "
        "GROUP BY industry",
        epsilon=1.0,
        purpose=PURPOSE,
        grant_id=grant,
    )
    firm.result(answer.result_id)
    firm.remaining(grant, CITIES["jinan"])
    # Training on both nodes.
    train_columns = {c: "aggregate_only" for c in (*FEATURES, "default")}
    asked = {d: {"epsilon": 4.0, "delta": 1e-4, "columns": train_columns} for d in CITIES.values()}
    request = firm.request_access(_terms(asked, "train", epsilon_per_use=3.0, models=["logreg"]))
    for dept in departments.values():
        reviewed = dept.approve(request.request_id)
    assert reviewed.request.grant is not None
    manifest = load_catalog(root / "all")[CITIES["jinan"]]
    categorical = {
        f: len(manifest.column(f).categories or ())
        for f in FEATURES
        if manifest.column(f).categories is not None
    }
    spec = {
        "model": "logreg",
        "features": list(FEATURES),
        "categorical": categorical,
        "label": "default",
        "nodes": list(CITIES.values()),
        "rounds": 1,
        "sample_rate": 0.2,
        "learning_rate": 0.5,
        "target_epsilon": 2.0,
        "target_delta": 1e-9,
        "min_nodes": 2,
    }
    job = firm.submit_job(spec, purpose=PURPOSE, grant_id=reviewed.request.grant.grant_id)
    finished = [e for e in firm.follow(job.job_id) if e.kind == "finished"]
    assert finished and finished[0].data["status"] == "completed", finished
    firm.jobs()
    firm.result(finished[0].data["result_id"])
    departments["jinan"].budgets()
    departments["jinan"].revoke(grant, "end of the study")
    with pytest.raises(ClientError):
        firm.query("SELECT COUNT(*) AS n FROM jinan_enterprise", epsilon=0.5, purpose=PURPOSE)
    head = regulator.tree_head()
    regulator.inclusion_proof(0, head.size)
    regulator.consistency_proof(1, head.size)
    regulator.entries(0, 5)
    firm.close()
    regulator.close()
    for dept in departments.values():
        dept.close()


def test_every_method_of_every_service_answered(
    story: tuple[dict[str, list[bytes]], Path],
) -> None:
    answers, _ = story
    expected = {
        f"{s.name}.{m.name}" for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods
    }
    silent = sorted(m for m in expected if not answers.get(m))
    assert not silent, f"methods the live story never got an answer from: {silent}"


def test_no_answer_carries_a_row(story: tuple[dict[str, list[bytes]], Path]) -> None:
    answers, data = story
    needles: list[bytes] = []
    for dataset in CITIES.values():
        frame = pl.read_parquet(data / f"{dataset}.parquet")
        needles += [v.encode() for v in frame["enterprise_id"].to_list()]
        for column in CONTINUOUS:
            for value in frame[column].drop_nulls().to_list():
                if value != int(value):  # an integer could be a count or a bound
                    needles += [struct.pack("<d", value), repr(value).encode()]
    assert len(needles) > 100
    blobs = [(m, b) for m, replies in answers.items() for b in replies]
    assert sum(len(b) for _, b in blobs) > 10_000  # the story produced real answers
    leaks = [(m, n[:40]) for m, b in blobs for n in needles if n in b]
    assert not leaks, f"row data in answers: {leaks[:5]}"
