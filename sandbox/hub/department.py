"""``DepartmentService``: what a data-owning department (数据提供部门) does at the hub.

Every method needs the ``department`` role; the department's name is the caller's verified
credential (certificate or API key), never a request field. It answers the access requests
that wait for it (:class:`policies.workflow.Workflow`), revokes grants on its own datasets and
reads its datasets' budgets:

* ``ListPendingRequests``: the requests waiting for the calling department;
* ``Approve`` / ``Refuse`` (with a reason the firm sees) / ``Amend`` (narrower terms for one
  dataset, then approved); the grant is issued after the last approval;
* ``RegisterDataset``: put a dataset on the hub (:mod:`sandbox.hub.registration`);
* ``Revoke``: :meth:`policies.Authority.revoke_grant`, only for a grant on one of the
  department's datasets; the signed notice is then delivered to the nodes
  (:mod:`sandbox.hub.revocations`);
* ``Budgets``: the dataset accounts of the department's datasets, and each grant's account on
  them.

Status codes: acting on another department's dataset ``PERMISSION_DENIED``; a request already
decided (or out of its validity) ``FAILED_PRECONDITION``; bad input or an unknown request
``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped,unused-ignore]

from policies.accounts import dataset_account, grant_account
from policies.authority import Authority
from policies.errors import InvalidRequestError, ReviewPermissionError, UnknownGrantError
from policies.grants import Grant
from policies.workflow import AccessRequest
from sandbox.credentials import Principal
from sandbox.errors import RoleError
from sandbox.hub.access import dataset_terms_from_pb, grant_pb, request_with_grant, requests_pb
from sandbox.hub.access import workflow_for as _workflow_for
from sandbox.hub.auth import Authenticator
from sandbox.hub.firm import FirmService
from sandbox.hub.messages import budget_account_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

T = TypeVar("T")


class DepartmentService(pb_grpc.DepartmentServiceServicer):
    """The department's side of the hub over ``authority`` (and its access workflow)."""

    def __init__(
        self, authority: Authority, auth: Authenticator, firm: FirmService | None = None
    ) -> None:
        self.authority = authority
        self.auth = auth
        self.workflow = _workflow_for(authority)
        #: The firm service whose routes, node client and revocation delivery this one uses;
        #: ``None``: ``RegisterDataset`` answers ``UNIMPLEMENTED``, revocations stay pending.
        self.firm = firm

    def _serve(self, method: str, context: Any, handler: Callable[[Principal], T]) -> T:
        def run(who: Principal) -> T:
            try:
                return handler(who)
            except ReviewPermissionError as exc:  # another department's dataset
                raise RoleError(str(exc)) from None

        return self.auth.serve(method, context, ("department",), run)

    def _owned(self, department: str) -> list[str]:
        """The datasets the department owns (by the registry's current policy)."""
        return sorted(
            p.dataset_id for p in self.authority.registry.datasets() if p.department == department
        )

    def _review(self, request: AccessRequest) -> pb.ReviewResponse:
        indexes = [r.log_index for r in request.reviews if r.log_index is not None]
        return pb.ReviewResponse(
            request=request_with_grant(self.authority, request),
            log_index=max(indexes, default=0),
        )

    # -- datasets -------------------------------------------------------------------------

    def RegisterDataset(  # gRPC's method name
        self, request: pb.RegisterDatasetRequest, context: Any
    ) -> pb.RegisterDatasetResponse:
        from sandbox.hub.registration import register_dataset

        firm = self.firm
        if firm is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this hub does not register datasets")
        assert firm is not None
        return self._serve(
            "RegisterDataset",
            context,
            lambda who: register_dataset(self.authority, firm, who, request),
        )

    # -- access requests ------------------------------------------------------------------

    def ListPendingRequests(  # gRPC's method name
        self, request: pb.ListPendingRequestsRequest, context: Any
    ) -> pb.ListPendingRequestsResponse:
        def handle(who: Principal) -> pb.ListPendingRequestsResponse:
            waiting = self.workflow.pending(who.name)
            return pb.ListPendingRequestsResponse(requests=requests_pb(self.authority, waiting))

        return self._serve("ListPendingRequests", context, handle)

    def Approve(self, request: pb.ApproveRequest, context: Any) -> pb.ReviewResponse:  # gRPC
        def handle(who: Principal) -> pb.ReviewResponse:
            done = self.workflow.approve(
                request.request_id, who.name, dataset=request.dataset or None, note=request.note
            )
            return self._review(done)

        return self._serve("Approve", context, handle)

    def Refuse(self, request: pb.RefuseRequest, context: Any) -> pb.ReviewResponse:  # gRPC
        def handle(who: Principal) -> pb.ReviewResponse:
            done = self.workflow.refuse(
                request.request_id, who.name, request.reason, dataset=request.dataset or None
            )
            return self._review(done)

        return self._serve("Refuse", context, handle)

    def Amend(self, request: pb.AmendRequest, context: Any) -> pb.ReviewResponse:  # gRPC
        def handle(who: Principal) -> pb.ReviewResponse:
            if not request.dataset or not request.HasField("terms"):
                raise InvalidRequestError(
                    "name the dataset and give the narrower terms (epsilon, delta, columns) "
                    "you accept for it"
                )
            amendment = dataset_terms_from_pb(request.terms)
            done = self.workflow.amend(
                request.request_id, who.name, request.dataset, amendment, request.reason
            )
            return self._review(done)

        return self._serve("Amend", context, handle)

    # -- grants and budgets ---------------------------------------------------------------

    def Revoke(self, request: pb.RevokeRequest, context: Any) -> pb.RevokeResponse:  # gRPC
        def handle(who: Principal) -> pb.RevokeResponse:
            try:
                grant = self.authority.registry.grant(request.grant_id)
            except UnknownGrantError:
                raise InvalidRequestError(
                    f"no grant {request.grant_id!r}; Budgets lists the grants on your datasets"
                ) from None
            owned = set(self._owned(who.name))
            if not set(grant.datasets) & owned:
                raise RoleError(
                    f"grant {grant.grant_id} covers no dataset of {who}; only an owning "
                    "department may revoke it"
                )
            if not request.reason.strip():
                raise InvalidRequestError("give the reason for the revocation; the firm sees it")
            revoked = self.authority.revoke_grant(grant.grant_id, who.name, request.reason)
            if not isinstance(revoked, Grant):
                revoked = self.authority.registry.grant(grant.grant_id)
            entries = self.authority.log.search(
                kind="revocation", firm=revoked.firm, newest_first=True, limit=100
            )
            index = next(
                (
                    int(e["index"])
                    for e in entries
                    if e.get("grant_id") == revoked.grant_id and e.get("version") == revoked.version
                ),
                0,
            )
            if self.firm is not None:  # tell the nodes now (what fails is retried later)
                self.firm.revocations.sync_all(set(revoked.datasets))
            return pb.RevokeResponse(grant=grant_pb(revoked), log_index=index)

        return self._serve("Revoke", context, handle)

    def Budgets(self, request: pb.BudgetsRequest, context: Any) -> pb.BudgetsResponse:  # gRPC
        def handle(who: Principal) -> pb.BudgetsResponse:
            owned = self._owned(who.name)
            if request.HasField("dataset"):
                if request.dataset not in owned:
                    raise RoleError(
                        f"{who} owns no dataset {request.dataset!r}; omit the dataset to list yours"
                    )
                owned = [request.dataset]
            ledger = self.authority.ledger
            out = pb.BudgetsResponse()
            grants = self.authority.registry.grants()
            for name in owned:
                out.accounts.append(
                    budget_account_pb(ledger.account(dataset_account(name)), "", name)
                )
                for grant in grants:
                    if name in grant.datasets:
                        status = ledger.account(grant_account(grant.grant_id, name))
                        out.accounts.append(budget_account_pb(status, grant.grant_id, name))
            return out

        return self._serve("Budgets", context, handle)
