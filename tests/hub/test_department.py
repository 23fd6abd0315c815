"""The approval workflow through the hub over real mTLS: a firm requests access
(FirmService.RequestAccess), the owning department (its certificate) lists, approves, refuses
or amends (DepartmentService), the grant is issued; who acts comes from the certificate only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from typer.testing import CliRunner

from policies.authority import Authority
from policies.datasets import DatasetPolicy
from policies.workflow import RequestState
from sandbox.catalog import load_catalog
from sandbox.cli import app
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.hub import HubServer, HubTLS, NodeRoute, start
from sandbox.hub.access import workflow_for
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.service import dataset_policy


@dataclass
class _Setup:
    authority: Authority
    hub: HubServer
    pki: Path
    ca_pem: bytes

    def channel(self, role: str, name: str) -> grpc.Channel:
        stem = self.pki / f"{role}-{name}"
        creds = grpc.ssl_channel_credentials(
            self.ca_pem, Path(f"{stem}-key.pem").read_bytes(), Path(f"{stem}.pem").read_bytes()
        )
        return grpc.secure_channel(f"127.0.0.1:{self.hub.port}", creds)

    def firm(self, name: str = "acme") -> Any:
        return pb_grpc.FirmServiceStub(self.channel("firm", name))

    def department(self, name: str) -> Any:
        return pb_grpc.DepartmentServiceStub(self.channel("department", name))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pums_catalog_dir: Path) -> Iterator[_Setup]:
    root = tmp_path_factory.mktemp("hub-department")
    ca = init_ca(root / "pki")
    for principal in (
        Principal("hub", "hub-1"),
        Principal("firm", "acme"),
        Principal("firm", "beta"),
        Principal("department", "census"),
        Principal("department", "tax"),
    ):
        issue_certificate(ca, principal)
    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(root / "state")
    policy = dataset_policy(catalog["pums"], epsilon_cap=20.0, delta_cap=1e-6)
    authority.register_dataset(policy.model_copy(update={"department": "census"}))
    authority.register_dataset(
        DatasetPolicy(dataset_id="income", department="tax", epsilon_cap=10.0, delta_cap=0.0)
    )
    pki = root / "pki"
    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(authority, catalog, {"pums": NodeRoute("node-1", "127.0.0.1:1")}, tls=tls)
    try:
        yield _Setup(authority, hub, pki, ca.cert_pem())
    finally:
        hub.stop()


def _terms(*datasets: str) -> pb.AccessTerms:
    now = datetime.now(UTC)
    return pb.AccessTerms(
        datasets={
            name: pb.DatasetTerms(
                epsilon=4.0,
                delta=0.0,
                columns={"*": pb.COLUMN_RULE_AGGREGATE_ONLY, "sex": pb.COLUMN_RULE_GROUP_BY},
            )
            for name in datasets
        },
        purpose="labour-market research",
        legal_basis="个人信息保护法 art. 13(5)",
        actions=[pb.ACTION_QUERY],
        epsilon_per_use=1.0,
        min_group_size=5,
        valid_from_ms=int((now - timedelta(days=1)).timestamp() * 1000),
        valid_until_ms=int((now + timedelta(days=30)).timestamp() * 1000),
    )


def _request(setup: _Setup, *datasets: str) -> pb.AccessRequest:
    reply = setup.firm().RequestAccess(pb.RequestAccessRequest(terms=_terms(*datasets)), timeout=10)
    request: pb.AccessRequest = reply.request
    return request


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_firm_requests_department_lists_and_approves_grant_issued(setup: _Setup) -> None:
    asked = _request(setup, "pums")
    assert asked.firm == "acme" and asked.state == pb.REQUEST_STATE_PENDING
    assert [(r.department, r.dataset) for r in asked.reviews] == [("census", "pums")]

    census = setup.department("census")
    pending = census.ListPendingRequests(pb.ListPendingRequestsRequest(), timeout=10)
    assert asked.request_id in [r.request_id for r in pending.requests]
    tax = setup.department("tax").ListPendingRequests(pb.ListPendingRequestsRequest(), timeout=10)
    assert asked.request_id not in [r.request_id for r in tax.requests]

    reply = census.Approve(pb.ApproveRequest(request_id=asked.request_id, note="ok"), timeout=10)
    assert reply.request.state == pb.REQUEST_STATE_GRANTED
    assert reply.log_index > 0
    grant = setup.authority.registry.grant(reply.request.grant.grant_id)
    assert grant.firm == "acme" and set(grant.datasets) == {"pums"}
    assert "census" in grant.approved_by
    assert reply.request.grant.firm == "acme"

    budgets = census.Budgets(pb.BudgetsRequest(), timeout=10)
    assert {(a.grant_id, a.dataset) for a in budgets.accounts} >= {
        ("", "pums"),
        (grant.grant_id, "pums"),
    }
    err = _refused(lambda: census.Budgets(pb.BudgetsRequest(dataset="income"), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    # Revoke: only a department owning one of the grant's datasets.
    tax = setup.department("tax")
    err = _refused(lambda: tax.Revoke(pb.RevokeRequest(grant_id=grant.grant_id, reason="x")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    revoked = census.Revoke(
        pb.RevokeRequest(grant_id=grant.grant_id, reason="purpose ended"), timeout=10
    )
    assert revoked.grant.revoked and revoked.grant.revoked_by == "census"
    assert setup.authority.registry.grant(grant.grant_id).revoked
    entry = setup.authority.log.search(kind="revocation", newest_first=True, limit=1)[0]
    assert entry["index"] == revoked.log_index


def test_department_cannot_answer_for_another_departments_dataset(setup: _Setup) -> None:
    asked = _request(setup, "pums", "income")
    tax = setup.department("tax")
    err = _refused(
        lambda: tax.Approve(pb.ApproveRequest(request_id=asked.request_id, dataset="pums"))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "census" in (err.details() or "") or "pums" in (err.details() or "")
    # Its own dataset: approved, the request still waits for census.
    reply = tax.Approve(pb.ApproveRequest(request_id=asked.request_id), timeout=10)
    assert reply.request.state == pb.REQUEST_STATE_PENDING
    # Answering again after approving: the request state refuses it.
    err = _refused(
        lambda: tax.Refuse(pb.RefuseRequest(request_id=asked.request_id, reason="changed mind"))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    # An unknown request id is a bad argument.
    err = _refused(lambda: tax.Approve(pb.ApproveRequest(request_id="ar-unknown")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Amending widens nothing: a larger epsilon than asked is refused.
    census = setup.department("census")
    wider = pb.DatasetTerms(epsilon=9.0, delta=0.0, columns={"*": pb.COLUMN_RULE_AGGREGATE_ONLY})
    err = _refused(
        lambda: census.Amend(
            pb.AmendRequest(request_id=asked.request_id, dataset="pums", terms=wider, reason="more")
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    narrower = pb.DatasetTerms(epsilon=2.0, delta=0.0, columns={"*": pb.COLUMN_RULE_AGGREGATE_ONLY})
    reply = census.Amend(
        pb.AmendRequest(
            request_id=asked.request_id, dataset="pums", terms=narrower, reason="halved"
        ),
        timeout=10,
    )
    assert reply.request.state == pb.REQUEST_STATE_GRANTED
    assert reply.request.grant.terms.datasets["pums"].epsilon == 2.0
    assert "sex" not in reply.request.grant.terms.datasets["pums"].columns


def test_firm_certificate_cannot_approve(setup: _Setup) -> None:
    asked = _request(setup, "pums")
    firm_as_department = pb_grpc.DepartmentServiceStub(setup.channel("firm", "acme"))
    err = _refused(
        lambda: firm_as_department.Approve(pb.ApproveRequest(request_id=asked.request_id))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert workflow_for(setup.authority).get(asked.request_id).state is RequestState.PENDING
    # And a department cannot request access as a firm.
    dept_as_firm = pb_grpc.FirmServiceStub(setup.channel("department", "census"))
    err = _refused(
        lambda: dept_as_firm.RequestAccess(pb.RequestAccessRequest(terms=_terms("pums")))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_refusal_reason_reaches_the_firm(setup: _Setup) -> None:
    asked = _request(setup, "pums")
    reason = "address data is not released for marketing"
    reply = setup.department("census").Refuse(
        pb.RefuseRequest(request_id=asked.request_id, reason=reason), timeout=10
    )
    assert reply.request.state == pb.REQUEST_STATE_REFUSED
    assert [r.reason for r in reply.request.reviews] == [reason]
    mine = {r.request_id: r for r in workflow_for(setup.authority).requests_of("acme")}
    seen = mine[asked.request_id]
    assert seen.state is RequestState.REFUSED and seen.grant_id is None
    assert any(reason in text for text in seen.reasons)


def test_bad_terms_are_invalid_argument(setup: _Setup) -> None:
    terms = _terms("pums")
    terms.valid_until_ms = terms.valid_from_ms - 1
    err = _refused(
        lambda: setup.firm().RequestAccess(pb.RequestAccessRequest(terms=terms), timeout=10)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_hub_serve_insecure_off_loopback_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["hub", "serve", "--state", str(tmp_path / "state"), "--catalog", str(tmp_path),
         "--insecure", "--listen", "0.0.0.0:50051"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "loopback" in result.output
    assert not (tmp_path / "state").exists()


def test_hub_serve_route_to_an_unregistered_dataset_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["hub", "serve", "--state", str(tmp_path / "state"), "--insecure",
         "--listen", "127.0.0.1:0", "--route", "pums=127.0.0.1:1"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "neither in --catalog nor registered" in result.output
    assert not (tmp_path / "state").exists()


def test_a_denial_for_lack_of_a_grant_says_what_to_do_next(setup: _Setup) -> None:
    beta = setup.firm("beta")
    query = pb.SubmitQueryRequest(
        sql="SELECT COUNT(*) AS n FROM pums", purpose="labour-market research", epsilon=1.0
    )
    err = _refused(lambda: beta.SubmitQuery(query, timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "ask for access first: `sandbox request --datasets pums" in err.details()
    asked = beta.RequestAccess(pb.RequestAccessRequest(terms=_terms("pums")), timeout=10)
    err = _refused(lambda: beta.SubmitQuery(query, timeout=10))
    assert f"your access request {asked.request.request_id} for pums is waiting for census" in (
        err.details()
    )
