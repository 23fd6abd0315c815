"""``FirmService``: what a data-using firm (数据使用方) does at the hub.

Implemented here: the catalog (``ListDatasets``, ``DescribeDataset``: public metadata only),
``RemainingBudget`` for the calling firm's own grants, ``RequestAccess`` (the approval workflow,
:mod:`sandbox.hub.access`), and ``SubmitQuery``, the governed path:

    firm (its identity from its credential, never from the request)
      -> parse the SQL against the catalog's public metadata (refusals cost nothing)
      -> Authority.decide for the calling firm (deny by default; request and decision logged)
      -> calibrate the loss the node will spend, from public metadata only (calibration.py)
      -> sign an Instruction for exactly this SQL, dataset, grant and loss (Ed25519)
      -> Authority.use: reserve that loss, then send the signed instruction to the node
         that holds the dataset (NodeService.Execute over mTLS); the node verifies it itself
      -> commit with the SHA-256 of the bytes handed to the firm (:func:`release_bytes`), or
         refund only on NotReleased (a node that did not answer leaves it charged)
      -> the firm gets the DP values and a LogProof: the release entry's index, its inclusion
         proof and the signed tree head it verifies against.

Also ``MockData`` (:mod:`sandbox.hub.mockdata`), ``GetResult`` (:mod:`sandbox.hub.releases`,
else ``jobs``), ``ListAccessRequests``/``WithdrawRequest``; pending revocations reach a node
before its next instruction (:mod:`sandbox.hub.revocations`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.authority import Authority, release_digest
from policies.decision import Decision
from policies.grants import Action, Grant
from policies.instructions import Instruction, sign_instruction
from policies.keys import load_signing_key
from policies.ledger import Reservation
from policies.requests import Request
from policies.use import Outcome
from sandbox.catalog import Catalog, Manifest
from sandbox.credentials import Principal
from sandbox.errors import (
    Denied,
    NodeRefusedError,
    NodeUnavailableError,
    RoleError,
    UnknownDatasetError,
    UnknownResultError,
)
from sandbox.hub.auth import Authenticator
from sandbox.hub.calibration import PublicCalibrator
from sandbox.hub.messages import budget_account_pb, check_reply, query_columns, release_bytes
from sandbox.hub.nodes import NodeClient as NodeClient
from sandbox.hub.nodes import NodeRoute as NodeRoute
from sandbox.hub.releases import ReleaseStore, log_proof, result_response
from sandbox.hub.revocations import RevocationDelivery
from sandbox.hub.routes import RouteStore, parse_manifest_yaml
from sandbox.node.convert import dataset_metadata_message as dataset_metadata
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc
from sandbox.query import check_dataset_delta, check_privacy_parameters, parse_query
from sandbox.query.plan import QueryPlan

#: How many query plans the hub remembers per catalog (see ``FirmService._plan``).
PLAN_CACHE_SIZE = 4096

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

    The datasets served are those registered (``RegisterDataset``: ``<state>/routes.db``,
    :mod:`sandbox.hub.routes`) and those of ``catalog`` (manifests) with a static route in
    ``routes``, which overrides a registered route; a dataset without a route is not listed.
    ``signing_key`` is the authority's Ed25519 key (default: loaded from
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
        self.nodes = nodes
        self.auth = auth
        self._key = signing_key or load_signing_key(authority.keys_dir, create=False)
        self._clock = clock
        self._static = (catalog, dict(routes))
        self.route_store = RouteStore(authority.state_dir)
        self.releases = ReleaseStore(authority.state_dir)
        self.revocations = RevocationDelivery(authority, nodes, self._key, lambda: self.routes)
        self.calibrator = PublicCalibrator()
        self._plans_lock = threading.Lock()
        self.catalog, self.routes = catalog, dict(routes)
        self.reload()
        #: Training jobs; ``None``: the training RPCs answer ``UNIMPLEMENTED``.
        self.jobs: TrainingJobs | None = None

    # -- catalog --------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the registered datasets (called after each registration; no restart)."""
        static_catalog, static_routes = self._static
        manifests = {m.name: m for m in static_catalog}
        routes: dict[str, NodeRoute] = {}
        for stored in self.route_store.all():
            manifests[stored.dataset] = parse_manifest_yaml(stored.manifest_yaml)
            routes[stored.dataset] = stored.route
        routes.update(static_routes)
        self.catalog, self.routes = Catalog(manifests, static_catalog.root), routes
        self._plans: OrderedDict[str, QueryPlan] = OrderedDict()  # plans of this catalog

    def _plan(self, sql: str) -> QueryPlan:
        """``parse_query`` against the current catalog, remembered for the last
        :data:`PLAN_CACHE_SIZE` texts (a plan is a pure function of the SQL and the catalog;
        :meth:`reload` forgets them). Bad SQL raises and is not remembered."""
        plans = self._plans
        with self._plans_lock:
            plan = plans.get(sql)
        if plan is None:
            plan = parse_query(sql, self.catalog)
            with self._plans_lock:
                plans[sql] = plan
                while len(plans) > PLAN_CACHE_SIZE:
                    plans.popitem(last=False)
        return plan

    def MockData(self, request: pb.MockDataRequest, context: Any) -> pb.MockDataResponse:  # gRPC
        from sandbox.hub.mockdata import mock_data

        def handle(who: Principal) -> pb.MockDataResponse:
            manifest, _ = self._manifest(request.dataset)
            return mock_data(manifest, request.count, request.seed)

        return self.auth.serve("MockData", context, ("firm",), handle)

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

    def ListAccessRequests(  # gRPC's method name
        self, request: pb.ListAccessRequestsRequest, context: Any
    ) -> pb.ListAccessRequestsResponse:
        from sandbox.hub.access import list_requests

        return self.auth.serve(
            "ListAccessRequests",
            context,
            ("firm",),
            lambda who: list_requests(self.authority, who),
        )

    def WithdrawRequest(  # gRPC's method name
        self, request: pb.WithdrawRequestRequest, context: Any
    ) -> pb.RequestAccessResponse:
        from sandbox.hub.access import withdraw_request

        return self.auth.serve(
            "WithdrawRequest",
            context,
            ("firm",),
            lambda who: withdraw_request(self.authority, who, request),
        )

    def GetResult(self, request: pb.GetResultRequest, context: Any) -> pb.GetResultResponse:  # gRPC
        def handle(who: Principal) -> pb.GetResultResponse:
            stored = self.releases.get(who.name, request.result_id)
            if stored is not None:
                return result_response(self.authority, stored)
            found = self.jobs.result(who, request.result_id) if self.jobs is not None else None
            if found is None:  # another firm's result is unknown to this one
                raise UnknownResultError(
                    f"no result {request.result_id!r} for {who}; use the result_id that "
                    "SubmitQuery or ListJobs gave you"
                )
            return found

        return self.auth.serve("GetResult", context, ("firm",), handle)

    def _next_step(self, firm: Principal, dataset: str, decision: Decision) -> str:
        """What the firm can do about a denial for lack of a grant: which request of its own
        still waits for which department, or how to ask for access."""
        if not any(r.code == "no-grant" for r in decision.reasons):
            return ""
        from sandbox.hub.access import workflow_for

        waiting = [
            r
            for r in workflow_for(self.authority).requests_of(firm.name)
            if r.state.value in ("pending", "approved") and dataset in r.terms.datasets
        ]
        if waiting:
            r = waiting[-1]
            who = ", ".join(r.waiting_for) or "the authority, to issue the grant"
            return f"your access request {r.request_id} for {dataset} is waiting for {who}"
        return f"ask for access first: `sandbox request --datasets {dataset} ...`"

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
        plan = self._plan(request.sql)  # bad SQL: refused, nothing charged
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
                    "sql": request.sql,
                }
            )
        )
        if not decision.permit or decision.obligations is None:
            raise Denied(decision, self._next_step(firm, plan.dataset, decision))
        ob = decision.obligations
        grant = self.authority.registry.grant(ob.grant_id)
        # Reserve and sign what the node will spend (calibrated from public metadata only).
        spend = self.calibrator.loss(manifest, plan, epsilon, delta, ob.min_group_size)
        instruction = Instruction.for_query(
            grant,
            ob.dataset,
            request.sql,
            spend,
            now_ms=int(self._clock() * 1000),
            min_group_size=ob.min_group_size,  # the node suppresses smaller groups itself
        )
        signed = sign_instruction(self._key, instruction)
        self.revocations.sync(route)  # the node learns of revocations before new work
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
            problem = check_reply(reply, signed, instruction)
            if problem is not None:
                answer["error"] = f"node {route.name} answered wrongly: {problem}"
                return Outcome(None, None, "bad-node-answer")
            answer["bytes"] = release_bytes(reply.query_result)
            return Outcome(reply.query_result, answer["bytes"])

        def on_failure(reservation: Reservation, reason: str) -> bytes | None:
            if "refused" in answer:
                return None  # the node confirmed that nothing left it: refund
            record = {"status": "failed", "reason": reason, "node": route.name}
            return json.dumps(record, sort_keys=True).encode()  # it may have: stays charged

        settled = self.authority.use([decision], run, spend=[spend], on_failure=on_failure)
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
        result_id = settled.reservations[0].reservation_id
        data = answer["bytes"]  # exactly what was committed
        digest = release_digest(data)
        self.releases.put(result_id, firm.name, ob.grant_id, ob.dataset, data, digest, index)
        return pb.SubmitQueryResponse(
            result_id=result_id,
            grant_id=ob.grant_id,
            result=result,
            release_digest=digest,
            log=log_proof(self.authority, index),
        )
