"""``DepartmentClient``: a data-owning department's (数据提供方) typed client of the hub's
``DepartmentService``: register a dataset held on one of its nodes, review the access requests
waiting for it (approve, refuse with a reason, amend to narrower terms), revoke grants on its
datasets and read their budgets. The department is the caller's credential, never an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.client.access import GrantInfo, RequestInfo, dataset_terms
from sandbox.client.firm import Account, DatasetInfo
from sandbox.client.profile import DEFAULT_TIMEOUT_S, Connection, Profile
from sandbox.errors import ClientInvalidRequest
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Registered:
    dataset: DatasetInfo
    log_index: int


@dataclass(frozen=True)
class Reviewed:
    """A request after a review, and the review's log entry."""

    request: RequestInfo
    log_index: int


@dataclass(frozen=True)
class Revoked:
    grant: GrantInfo
    log_index: int


class DepartmentClient:
    """A department's connection to the hub (certificate or API key of role ``department``)."""

    def __init__(self, profile: Profile | None = None, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.connection = Connection(profile or Profile.load(), timeout)
        self._stub = pb_grpc.DepartmentServiceStub(self.connection.channel)

    def __enter__(self) -> DepartmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def register(
        self,
        manifest: Path | str,
        *,
        node: str,
        node_address: str,
        epsilon_cap: float,
        delta_cap: float = 0.0,
    ) -> Registered:
        """Register the dataset of ``manifest`` (a manifest YAML file: public metadata only),
        held on ``node`` at ``node_address``, with its total budget over all grants."""
        try:
            text = Path(manifest).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClientInvalidRequest(
                f"cannot read the manifest {manifest}: {exc.strerror}", "INVALID_ARGUMENT"
            ) from None
        request = pb.RegisterDatasetRequest(
            manifest_yaml=text,
            node=node,
            node_address=node_address,
            epsilon_cap=epsilon_cap,
            delta_cap=delta_cap,
        )
        reply = self.connection.call(self._stub.RegisterDataset, request)
        return Registered(DatasetInfo.from_pb(reply.dataset), reply.log_index)

    def pending(self) -> list[RequestInfo]:
        """The access requests waiting for this department's answer."""
        reply = self.connection.call(
            self._stub.ListPendingRequests, pb.ListPendingRequestsRequest()
        )
        return [RequestInfo.from_pb(r) for r in reply.requests]

    def _review(self, method: Any, request: Any) -> Reviewed:
        reply = self.connection.call(method, request)
        return Reviewed(RequestInfo.from_pb(reply.request), reply.log_index)

    def approve(self, request_id: str, dataset: str = "", note: str = "") -> Reviewed:
        """Approve ``request_id`` for ``dataset`` (empty: each of this department's datasets)."""
        message = pb.ApproveRequest(request_id=request_id, dataset=dataset, note=note)
        return self._review(self._stub.Approve, message)

    def refuse(self, request_id: str, reason: str, dataset: str = "") -> Reviewed:
        """Refuse ``request_id``; the firm sees ``reason``."""
        message = pb.RefuseRequest(request_id=request_id, dataset=dataset, reason=reason)
        return self._review(self._stub.Refuse, message)

    def amend(
        self,
        request_id: str,
        dataset: str,
        terms: Mapping[str, Any] | pb.DatasetTerms,
        reason: str,
    ) -> Reviewed:
        """Approve with narrower terms for ``dataset`` (``{"epsilon", "delta", "columns"}``)."""
        message = terms if isinstance(terms, pb.DatasetTerms) else dataset_terms(terms)
        request = pb.AmendRequest(
            request_id=request_id, dataset=dataset, terms=message, reason=reason
        )
        return self._review(self._stub.Amend, request)

    def revoke(self, grant_id: str, reason: str) -> Revoked:
        """Revoke a grant on this department's datasets; its nodes refuse it from now on."""
        reply = self.connection.call(
            self._stub.Revoke, pb.RevokeRequest(grant_id=grant_id, reason=reason)
        )
        return Revoked(GrantInfo.from_pb(reply.grant), reply.log_index)

    def budgets(self, dataset: str | None = None) -> list[Account]:
        """The budget accounts of this department's datasets (or of one), and of their grants."""
        request = pb.BudgetsRequest(dataset=dataset) if dataset else pb.BudgetsRequest()
        reply = self.connection.call(self._stub.Budgets, request)
        return [Account.from_pb(a) for a in reply.accounts]


__all__ = ["DepartmentClient", "Registered", "Reviewed", "Revoked"]
