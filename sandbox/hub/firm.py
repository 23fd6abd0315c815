"""``FirmService``: what a data-using firm (数据使用方) does at the hub.

Implemented here: the catalog (``ListDatasets``, ``DescribeDataset``: public metadata only),
``RemainingBudget`` for the calling firm's own grants, ``RequestAccess`` (the approval workflow,
:mod:`sandbox.hub.access`), and ``SubmitQuery``, the governed path:

    firm (its identity from its credential, never from the request)
      -> parse the SQL against the catalog's public metadata (refusals cost nothing)
      -> Authority.decide for the calling firm (deny by default; request and decision logged)
      -> sign an Instruction for exactly this SQL, dataset, grant and loss (Ed25519)
      -> Authority.use: reserve the decided loss, then send the signed instruction to the node
         that holds the dataset (NodeService.Execute over mTLS); the node verifies it itself
      -> commit with the SHA-256 of the bytes handed to the firm (:func:`release_bytes`), or
         refund only when the node answered NotReleased; if the node did not answer, the
         reservation stays charged (something may have left it)
      -> the firm gets the DP values and a LogProof: the release entry's index, its inclusion
         proof and the signed tree head it verifies against.

The remaining FirmService methods answer ``UNIMPLEMENTED`` (see ``docs/hub.md``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from policies.accounts import AccountStatus
from policies.authority import Authority, release_digest
from policies.grants import Action, ColumnUse, Grant
from policies.instructions import Instruction, SignedInstruction, sign_instruction
from policies.keys import load_signing_key
from policies.ledger import Reservation
from policies.loss import EPS_UNITS
from policies.requests import ColumnRef, Request
from policies.use import Outcome
from sandbox.catalog import Catalog, Manifest
from sandbox.credentials import Principal
from sandbox.errors import (
    Denied,
    NodeRefusedError,
    NodeUnavailableError,
    RoleError,
    UnknownDatasetError,
)
from sandbox.hub.auth import Authenticator
from sandbox.node.convert import dataset_metadata_message as dataset_metadata
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.query import check_dataset_delta, check_privacy_parameters, parse_query
from sandbox.query.plan import QueryPlan

#: The pseudo-column a grant lists (``"*": aggregate_only``) to allow COUNT(*).
ROW_COUNT = "*"
#: How long the hub waits for a node's answer to one instruction.
DEFAULT_NODE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeRoute:
    """Where a dataset lives: the node's name (shown to firms) and its gRPC address."""

    name: str
    address: str


class NodeClient:
    """Calls ``NodeService.Execute`` on department nodes, one cached channel per address.

    ``credentials`` are the hub's channel credentials (its client certificate and the CA,
    for mTLS with the nodes); ``None`` means plaintext, for a loopback test setup only.
    """

    def __init__(
        self,
        credentials: grpc.ChannelCredentials | None,
        timeout_s: float = DEFAULT_NODE_TIMEOUT_S,
    ) -> None:
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                if self.credentials is None:
                    channel = grpc.insecure_channel(address)
                else:
                    channel = grpc.secure_channel(address, self.credentials)
                self._channels[address] = channel
            return channel

    def execute(self, address: str, signed: SignedInstruction) -> pb.ExecuteResponse:
        """Send one signed instruction; raises ``grpc.RpcError`` if the node does not answer."""
        stub = pb_grpc.NodeServiceStub(self._channel(address))
        message = pb.SignedInstruction(
            instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
        )
        return stub.Execute(pb.ExecuteRequest(instruction=message), timeout=self.timeout_s)

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()


# -- conversions ----------------------------------------------------------------------------


def budget_account_pb(status: AccountStatus, grant_id: str, dataset: str) -> pb.BudgetAccount:
    """An :class:`policies.accounts.AccountStatus` as a ``BudgetAccount``."""
    return pb.BudgetAccount(
        account=status.account,
        grant_id=grant_id,
        dataset=dataset,
        epsilon_cap=status.epsilon_cap,
        delta_cap=status.delta_cap,
        epsilon_spent=status.epsilon_spent,
        delta_spent=status.delta_spent,
        basic_epsilon=status.basic_epsilon,
        rho=status.rho,
        pending=status.pending,
        committed=status.committed,
        refunded=status.refunded,
        withheld=status.withheld,
    )


def release_bytes(result: pb.QueryResult) -> bytes:
    """The exact bytes a firm is handed and the log's release digest covers: the result's
    canonical JSON (protobuf field names, sorted keys, no spaces, UTF-8).

    A firm recomputes ``sha256(release_bytes(reply.result))`` and compares it with
    ``reply.release_digest`` and with the logged release entry.

    >>> release_bytes(pb.QueryResult(dataset="pums", outputs=["n"], epsilon_spent=0.5))
    b'{"dataset":"pums","epsilon_spent":0.5,"outputs":["n"]}'
    """
    data = json_format.MessageToDict(result, preserving_proto_field_name=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def query_columns(plan: QueryPlan) -> tuple[ColumnRef, ...]:
    """Every column a plan touches and how, as the policy engine checks them (COUNT(*) is a
    use of the pseudo-column ``*``)."""
    uses: dict[str, set[str]] = {k: set(v) for k, v in plan.column_uses().items()}
    if any(a.kind == "count" and a.column is None for a in plan.aggregates):
        uses[ROW_COUNT] = {"aggregate"}
    return tuple(
        ColumnRef(name=name, use=ColumnUse(use))
        for name, col_uses in sorted(uses.items())
        for use in sorted(col_uses)
    )


# -- the service ----------------------------------------------------------------------------


class TrainingJobs(Protocol):
    """The hub's training jobs (``sandbox.hub.jobs``): what the firm's training RPCs call."""

    def submit(
        self, firm: Principal, request: pb.SubmitTrainingJobRequest
    ) -> pb.SubmitTrainingJobResponse: ...

    def follow(self, firm: Principal, job_id: str, context: Any) -> Iterator[pb.JobEvent]: ...

    def list_jobs(self, firm: Principal) -> pb.ListJobsResponse: ...

    def result(self, firm: Principal, result_id: str) -> pb.GetResultResponse | None:
        """The firm's finished job with this result id, or ``None`` if it is not a job's."""
        ...


class FirmService(pb_grpc.FirmServiceServicer):
    """The firm's side of the hub; every method needs the ``firm`` role.

    ``catalog`` holds the manifests (public metadata) of the datasets the hub knows,
    ``routes`` maps each dataset to the node that holds it; a dataset without a route is not
    listed. ``signing_key`` is the authority's Ed25519 key (default: loaded from
    ``authority.keys_dir``).
    """

    def __init__(
        self,
        authority: Authority,
        catalog: Catalog,
        routes: Mapping[str, NodeRoute],
        nodes: NodeClient,
        auth: Authenticator,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authority = authority
        self.catalog = catalog
        self.routes = dict(routes)
        self.nodes = nodes
        self.auth = auth
        self._key = signing_key or load_signing_key(authority.keys_dir, create=False)
        self._clock = clock
        #: Training jobs; ``None``: the training RPCs answer ``UNIMPLEMENTED``.
        self.jobs: TrainingJobs | None = None

    # -- catalog --------------------------------------------------------------------------

    def _manifest(self, name: str) -> tuple[Manifest, NodeRoute]:
        route = self.routes.get(name)
        if route is None or name not in self.catalog:
            raise UnknownDatasetError(
                f"no dataset {name!r} at this hub; ListDatasets shows the datasets you can use"
            )
        return self.catalog[name], route

    def ListDatasets(  # gRPC's method name
        self, request: pb.ListDatasetsRequest, context: Any
    ) -> pb.ListDatasetsResponse:
        def handle(who: Principal) -> pb.ListDatasetsResponse:
            names = sorted(n for n in self.routes if n in self.catalog)
            return pb.ListDatasetsResponse(
                datasets=[dataset_metadata(self.catalog[n], self.routes[n].name) for n in names]
            )

        return self.auth.serve("ListDatasets", context, ("firm",), handle)

    def DescribeDataset(  # gRPC's method name
        self, request: pb.DescribeDatasetRequest, context: Any
    ) -> pb.DescribeDatasetResponse:
        def handle(who: Principal) -> pb.DescribeDatasetResponse:
            manifest, route = self._manifest(request.dataset)
            return pb.DescribeDatasetResponse(dataset=dataset_metadata(manifest, route.name))

        return self.auth.serve("DescribeDataset", context, ("firm",), handle)

    # -- budget ---------------------------------------------------------------------------

    def _own_grant(self, firm: Principal, grant_id: str, dataset: str) -> Grant:
        """The calling firm's grant ``grant_id`` (or its one grant on ``dataset``)."""
        if grant_id:
            grants = [g for g in self.authority.registry.grants() if g.grant_id == grant_id]
            if not grants or grants[0].firm != firm.name:
                raise RoleError(
                    f"{firm} holds no grant {grant_id!r}; ask RemainingBudget without a grant id "
                    "to use your grant on a dataset"
                )
            return grants[0]
        mine = [
            g
            for g in self.authority.registry.grants()
            if g.firm == firm.name and not g.revoked and (not dataset or dataset in g.datasets)
        ]
        if len(mine) != 1:
            where = f" on dataset {dataset!r}" if dataset else ""
            raise RoleError(
                f"{firm} holds {len(mine)} current grants{where}; name the grant id"
                if mine
                else f"{firm} holds no current grant{where}; request access first"
            )
        return mine[0]

    def RemainingBudget(  # gRPC's method name
        self, request: pb.RemainingBudgetRequest, context: Any
    ) -> pb.RemainingBudgetResponse:
        def handle(who: Principal) -> pb.RemainingBudgetResponse:
            grant = self._own_grant(who, request.grant_id, request.dataset)
            dataset = request.dataset
            if not dataset and len(grant.datasets) == 1:
                dataset = next(iter(grant.datasets))
            if dataset not in grant.datasets:
                raise RoleError(
                    f"grant {grant.grant_id} covers {', '.join(sorted(grant.datasets))}; name "
                    "one of them"
                )
            left = self.authority.remaining(grant.grant_id, dataset)
            return pb.RemainingBudgetResponse(
                epsilon=left.epsilon,
                delta=left.delta,
                grant=budget_account_pb(left.grant, grant.grant_id, dataset),
                dataset=budget_account_pb(left.dataset, "", dataset),
            )

        return self.auth.serve("RemainingBudget", context, ("firm",), handle)

    # -- access requests ------------------------------------------------------------------

    def RequestAccess(  # gRPC's method name
        self, request: pb.RequestAccessRequest, context: Any
    ) -> pb.RequestAccessResponse:
        from sandbox.hub.access import request_access  # the workflow's conversions

        return self.auth.serve(
            "RequestAccess",
            context,
            ("firm",),
            lambda who: request_access(self.authority, who, request),
        )

    # -- training jobs (sandbox.hub.jobs) -------------------------------------------------

    def _jobs(self, context: Any) -> TrainingJobs:
        if self.jobs is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this hub does not run training jobs")
        assert self.jobs is not None
        return self.jobs

    def SubmitTrainingJob(  # gRPC's method name
        self, request: pb.SubmitTrainingJobRequest, context: Any
    ) -> pb.SubmitTrainingJobResponse:
        jobs = self._jobs(context)
        return self.auth.serve(
            "SubmitTrainingJob", context, ("firm",), lambda who: jobs.submit(who, request)
        )

    def FollowJob(  # gRPC's method name
        self, request: pb.FollowJobRequest, context: Any
    ) -> Iterator[pb.JobEvent]:
        jobs = self._jobs(context)
        return self.auth.serve(
            "FollowJob", context, ("firm",), lambda who: jobs.follow(who, request.job_id, context)
        )

    def ListJobs(  # gRPC's method name
        self, request: pb.ListJobsRequest, context: Any
    ) -> pb.ListJobsResponse:
        jobs = self._jobs(context)
        return self.auth.serve("ListJobs", context, ("firm",), lambda who: jobs.list_jobs(who))

    # -- the governed query ---------------------------------------------------------------

    def SubmitQuery(  # gRPC's method name
        self, request: pb.SubmitQueryRequest, context: Any
    ) -> pb.SubmitQueryResponse:
        return self.auth.serve(
            "SubmitQuery", context, ("firm",), lambda who: self.submit_query(who, request)
        )

    def submit_query(
        self, firm: Principal, request: pb.SubmitQueryRequest
    ) -> pb.SubmitQueryResponse:
        """The governed query for the authenticated ``firm`` (see the module docstring)."""
        epsilon, delta = check_privacy_parameters(request.epsilon, request.delta)
        plan = parse_query(request.sql, self.catalog)  # bad SQL: refused, nothing charged
        manifest, route = self._manifest(plan.dataset)
        delta = check_dataset_delta(manifest, delta)
        decision = self.authority.decide(
            Request.parse(
                {
                    "firm": firm.name,  # from the credential, never from the request
                    "dataset": plan.dataset,
                    "purpose": request.purpose,
                    "action": Action.QUERY,
                    "columns": query_columns(plan),
                    "epsilon": epsilon,
                    "delta": delta,
                    "min_group_size": request.min_group_size
                    if request.HasField("min_group_size")
                    else None,
                    "grant_id": request.grant_id if request.HasField("grant_id") else None,
                }
            )
        )
        if not decision.permit or decision.obligations is None:
            raise Denied(decision)
        ob = decision.obligations
        grant = self.authority.registry.grant(ob.grant_id)
        instruction = Instruction.for_query(
            grant,
            ob.dataset,
            request.sql,
            ob.loss,
            now_ms=int(self._clock() * 1000),
            min_group_size=ob.min_group_size,  # the node suppresses smaller groups itself
        )
        signed = sign_instruction(self._key, instruction)
        answer: dict[str, Any] = {}

        def run(reservations: tuple[Reservation, ...]) -> Outcome[pb.QueryResult | None]:
            try:
                reply = self.nodes.execute(route.address, signed)
            except grpc.RpcError as exc:
                code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
                answer["error"] = f"node {route.name} did not answer ({code})"
                return Outcome(None, None, "node-unavailable")
            if reply.WhichOneof("outcome") == "not_released":
                answer["refused"] = reply.not_released
                return Outcome(None, None, "not-released")
            problem = _check_reply(reply, signed, instruction)
            if problem is not None:
                answer["error"] = f"node {route.name} answered wrongly: {problem}"
                return Outcome(None, None, "bad-node-answer")
            return Outcome(reply.query_result, release_bytes(reply.query_result))

        def on_failure(reservation: Reservation, reason: str) -> bytes | None:
            if "refused" in answer:
                return None  # the node confirmed that nothing left it: refund
            record = {"status": "failed", "reason": reason, "node": route.name}
            return json.dumps(record, sort_keys=True).encode()  # it may have: stays charged

        settled = self.authority.use([decision], run, on_failure=on_failure)
        index = settled.release_indexes.get(ob.dataset)
        if not settled.released or settled.value is None or index is None:
            refused = answer.get("refused")
            if refused is not None:
                raise NodeRefusedError(
                    refused.code,
                    f"node {route.name} released nothing ({refused.code}: {refused.reason}); "
                    "your budget was refunded",
                )
            raise NodeUnavailableError(
                f"{answer.get('error', 'the node failed')}; the budget stays charged (log entry "
                f"{index}) since the node did not confirm that nothing was released; try later"
            )
        result = settled.value
        head = self.authority.tree_head()
        proof = self.authority.inclusion_proof(index, head.size)
        return pb.SubmitQueryResponse(
            result_id=settled.reservations[0].reservation_id,
            grant_id=ob.grant_id,
            result=result,
            release_digest=release_digest(release_bytes(result)),
            log=pb.LogProof(
                index=index,
                tree_size=head.size,
                inclusion_proof=proof,
                entry=self.authority.log.entry(index),
                tree_head=pb.SignedTreeHead(
                    size=head.size,
                    root=head.root,
                    timestamp_ms=head.timestamp_ms,
                    key_id=head.key_id,
                    signature=head.signature,
                ),
            ),
        )


def _check_reply(
    reply: pb.ExecuteResponse, signed: SignedInstruction, instruction: Instruction
) -> str | None:
    """Why a node's answer is not a release of exactly this instruction (``None``: it is)."""
    if reply.WhichOneof("outcome") != "query_result":
        return f"expected a query result, got {reply.WhichOneof('outcome') or 'nothing'}"
    if reply.instruction_digest != hashlib.sha256(signed.payload).digest():
        return "the answer is for another instruction"
    result = reply.query_result
    if result.dataset != instruction.dataset or result.sql != instruction.sql:
        return "the result is for another dataset or query"
    if result.epsilon_spent * EPS_UNITS > instruction.epsilon + 1:
        return "the node reports spending more than the instruction allows"
    return None
