"""The hub's training jobs (:class:`~sandbox.hub.firm.TrainingJobs`): a firm's DP training job
submitted over gRPC, run as federated rounds on the department nodes.

    SubmitTrainingJob (firm from its credential)
      -> check the JobSpec against the catalog's public metadata (features, label, delta)
      -> plan it once (federation.accounting.plan_job): every dataset's DP-SGD parameters,
         steps and predicted (epsilon, delta)
      -> Authority.decide per dataset for the calling firm (model, columns, purpose, plan)
      -> Authority.use: reserve every dataset's predicted loss, then sign one ``train``
         instruction per dataset (plan digest, steps, loss) and have each node accept it
         (NodeService.Execute: the node admits it against its own spend and records the plan)
      -> the firm gets the job id, the reservations and the log index at once; the job then
         waits for the one training slot and runs JobServer over a RemoteGrid
         (NodeService.RunTask per message, the signed instruction with every task)
      -> commit: the release is the canonical JSON of the weights' SHA-256 and the model card
         message (as sandbox.training.TrainingService releases a model); the TrainingResult is
         kept for GetResult and ListJobs; JobEvents (accepted, round, failure, finished) go to every
         FollowJob stream, and a finished job's stream replays them and ends.

Charging: a dataset whose node accepted the plan stays charged whatever happens after (the
node kept the spend in its own store and may have released DP output); only a dataset whose
node refused the plan, or was never asked, is refunded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.authority import Authority, release_digest
from policies.decision import Decision
from policies.grants import Action, ColumnUse
from policies.instructions import Instruction, SignedInstruction, sign_instruction
from policies.keys import load_signing_key
from policies.ledger import Reservation
from policies.requests import ColumnRef, Request
from policies.use import Outcome
from sandbox.catalog import Catalog
from sandbox.credentials import Principal
from sandbox.errors import Denied, HubError, TrainingError, UnknownJobError
from sandbox.hub.cards import model_card_pb, model_file, round_pb, spec_from_pb
from sandbox.hub.nodes import NodeClient
from sandbox.hub.releases import log_proof
from sandbox.protocol.v1 import sandbox_pb2 as pb

if TYPE_CHECKING:
    from federation.accounting import JobPlan
    from federation.job import JobSpec
    from federation.result import TrainingResult
    from sandbox.deployment.processes import Federation

log = logging.getLogger(__name__)

#: How long SubmitTrainingJob waits for the reservations and the nodes' acceptances.
ACCEPT_TIMEOUT_S = 60.0
#: The format of ``TrainingResult.model_weights``: a serialized ``sandbox.v1.TaskTensors``.
WEIGHTS_FORMAT = "sandbox.v1.TaskTensors"


class _Route(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...


# -- one job --------------------------------------------------------------------------------


@dataclass
class _Job:
    job_id: str
    firm: str
    grant_id: str
    spec: JobSpec
    plan: JobPlan
    submitted_ms: int
    routes: Mapping[str, _Route] = field(default_factory=dict)
    status: str = "running"
    events: list[pb.JobEvent] = field(default_factory=list)
    rounds_done: int = 0
    accepted: set[str] = field(default_factory=set)
    reservations: tuple[Reservation, ...] = ()
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    result: pb.TrainingResult | None = None
    digest: str = ""
    release_index: int | None = None
    done: bool = False


class HubJobs:
    """Training jobs of one hub. ``catalog()`` and ``routes()`` give the hub's current catalog
    and each dataset's node (``name``, ``address``), read at every submission (datasets are
    registered while the hub runs); ``nodes`` is the hub's node client (its credentials are
    reused for ``RunTask``). One job trains at a time; the others wait, their budget
    reserved."""

    def __init__(
        self,
        authority: Authority,
        nodes: NodeClient,
        *,
        catalog: Callable[[], Catalog],
        routes: Callable[[], Mapping[str, _Route]],
        signing_key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authority = authority
        self.nodes = nodes
        self._catalog = catalog
        self._routes = routes
        self._key = signing_key or load_signing_key(authority.keys_dir, create=False)
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._changed = threading.Condition()
        self._slot = threading.Lock()  # the one training slot
        #: Flower deployment processes (``sandbox hub serve --flower``): jobs then run over the
        #: SuperLink and the departments' SuperNodes (:mod:`sandbox.deployment`); ``None``:
        #: over ``NodeService.RunTask`` (:class:`~sandbox.hub.grid.RemoteGrid`).
        self.flower: Federation | None = None

    # -- TrainingJobs ---------------------------------------------------------------------

    def submit(
        self, firm: Principal, request: pb.SubmitTrainingJobRequest
    ) -> pb.SubmitTrainingJobResponse:
        """Check, plan, decide and reserve; return once every node accepted the plan."""
        from federation.accounting import plan_job
        from federation.errors import FederationError

        spec = spec_from_pb(request.spec)
        routes = dict(self._routes())
        self._check(spec, routes)
        try:
            plan = plan_job(spec)
        except FederationError as exc:
            raise TrainingError(f"the job cannot be planned: {exc}") from None
        grant_id = request.grant_id if request.HasField("grant_id") else None
        decisions = [
            self._decide(firm, request.purpose, spec, plan, d, grant_id) for d in spec.nodes
        ]
        grants = {d.obligations.grant_id for d in decisions if d.obligations is not None}
        job = _Job(
            job_id="job-" + secrets.token_hex(12),
            firm=firm.name,
            grant_id=",".join(sorted(grants)),
            spec=spec,
            plan=plan,
            submitted_ms=int(self._clock() * 1000),
            routes={d: routes[d] for d in spec.nodes},
        )
        with self._changed:
            self._jobs[job.job_id] = job
        thread = threading.Thread(
            target=self._run, args=(job, decisions), name=f"job-{job.job_id}", daemon=True
        )
        thread.start()
        if not job.ready.wait(ACCEPT_TIMEOUT_S) or job.error is not None:
            with self._changed:
                self._jobs.pop(job.job_id, None)
            if job.error is not None:
                raise job.error
            raise HubError("the nodes did not accept the job in time; try again later")
        index = self._reservation_index(job)
        return pb.SubmitTrainingJobResponse(
            job_id=job.job_id,
            grant_id=job.grant_id,
            config_hash=spec.config_hash(),
            reserved={
                r.dataset: pb.PrivacySpent(epsilon=r.epsilon, delta=r.delta)
                for r in job.reservations
            },
            log_index=index,
        )

    def follow(self, firm: Principal, job_id: str, context: Any) -> Iterator[pb.JobEvent]:
        """The job's events so far, then each new one until it finishes (another firm's job:
        ``UnknownJobError``, raised before the stream starts)."""
        job = self._job(firm, job_id)

        def stream() -> Iterator[pb.JobEvent]:
            sent = 0
            while True:
                with self._changed:
                    while sent >= len(job.events) and not job.done:
                        self._changed.wait(timeout=1.0)
                        if context is not None and not context.is_active():
                            return
                    pending = job.events[sent:]
                    done = job.done
                yield from pending
                sent += len(pending)
                if done and sent >= len(job.events):
                    return

        return stream()

    def list_jobs(self, firm: Principal) -> pb.ListJobsResponse:
        with self._changed:
            jobs = [j for j in self._jobs.values() if j.firm == firm.name]
        jobs.sort(key=lambda j: j.submitted_ms, reverse=True)
        return pb.ListJobsResponse(
            jobs=[
                pb.JobSummary(
                    job_id=j.job_id,
                    grant_id=j.grant_id,
                    status=j.status,
                    datasets=list(j.spec.nodes),
                    rounds=j.spec.rounds,
                    rounds_done=j.rounds_done,
                    submitted_ms=j.submitted_ms,
                    result_id=j.job_id if j.done and j.result is not None else "",
                )
                for j in jobs
            ]
        )

    def result(self, firm: Principal, result_id: str) -> pb.GetResultResponse | None:
        """The calling firm's finished job ``result_id`` (its model and card), else ``None``."""
        with self._changed:
            job = self._jobs.get(result_id)
        if job is None or job.firm != firm.name or not job.done or job.result is None:
            return None
        response = pb.GetResultResponse(
            result_id=job.job_id,
            grant_id=job.grant_id,
            training=job.result,
            release_digest=job.digest,
        )
        if job.release_index is not None:
            response.log.CopyFrom(log_proof(self.authority, job.release_index))
        return response

    # -- submit's steps -------------------------------------------------------------------

    def _check(self, spec: JobSpec, routes: Mapping[str, _Route]) -> None:
        from sandbox.training import check_job_on

        if not spec.dp:
            raise TrainingError(
                "this job has dp=False: training on person data without DP-SGD is refused; "
                "set dp with a target_epsilon"
            )
        catalog = self._catalog()
        for dataset in spec.nodes:
            if dataset not in routes:
                raise UnknownJobError(
                    f"no node serves dataset {dataset!r}; list the datasets with ListDatasets"
                )
            check_job_on(catalog[dataset], spec)

    def _decide(
        self,
        firm: Principal,
        purpose: str,
        spec: JobSpec,
        plan: JobPlan,
        dataset: str,
        grant_id: str | None,
    ) -> Decision:
        cost = plan.predicted[dataset]
        decision = self.authority.decide(
            Request.parse(
                {
                    "firm": firm.name,  # from the credential, never from the request
                    "dataset": dataset,
                    "purpose": purpose,
                    "action": Action.TRAIN,
                    "columns": tuple(
                        ColumnRef(name=c, use=ColumnUse.AGGREGATE)
                        for c in (*spec.features, spec.label)
                    ),
                    "epsilon": cost.epsilon,
                    "delta": cost.delta,
                    "model": spec.model,
                    "plan_digest": spec.config_hash(),
                    "grant_id": grant_id,
                }
            )
        )
        if not decision.permit or decision.obligations is None:
            raise Denied(decision)
        return decision

    def _reservation_index(self, job: _Job) -> int:
        """The log index of the job's first reservation entry (searched from the end)."""
        ids = {r.reservation_id for r in job.reservations}
        size = self.authority.log.size
        found = size - 1
        for index in range(size - 1, max(-1, size - 1001), -1):
            try:
                entry = json.loads(self.authority.log.entry(index))
            except ValueError:
                continue
            if entry.get("reservation_id") in ids and entry.get("status") == "reserved":
                found = index
        return max(0, found)

    # -- the job's thread -----------------------------------------------------------------

    def _run(self, job: _Job, decisions: list[Decision]) -> None:
        try:
            settled = self.authority.use(
                decisions,
                lambda reservations: self._train(job, decisions, reservations),
                on_failure=lambda r, reason: self._on_failure(job, r, reason),
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the submitter or the stream
            if not job.ready.is_set():
                job.error = exc
                job.ready.set()
                return
            log.warning("training job %s failed: %s", job.job_id, exc)
            self._finish(job, None, "aborted", f"the job failed ({type(exc).__name__})", {})
            return
        result: TrainingResult | None = settled.value
        reason = None if settled.released else (result.abort_reason if result else None)
        status = "completed" if settled.released else "aborted"
        self._finish(job, result, status, reason, settled.release_indexes)

    def _train(
        self,
        job: _Job,
        decisions: list[Decision],
        reservations: tuple[Reservation, ...],
    ) -> Outcome[TrainingResult | None]:
        """Sign and send each dataset's instruction; once all accepted, train in the slot."""
        job.reservations = reservations
        signed: dict[str, SignedInstruction] = {}
        for decision in decisions:
            ob = decision.obligations
            assert ob is not None
            grant = self.authority.registry.grant(ob.grant_id)
            instruction = Instruction.for_job(
                "train",
                grant,
                ob.dataset,
                job.spec.config_hash(),
                ob.loss,
                max_steps=job.plan.total_steps(ob.dataset),
                now_ms=int(self._clock() * 1000),
            )
            signed[ob.dataset] = sign_instruction(self._key, instruction)
        for dataset, one in signed.items():
            route = job.routes[dataset]
            try:
                reply = self.nodes.execute(route.address, one)
            except grpc.RpcError as exc:
                details = exc.details() if hasattr(exc, "details") else str(exc)
                raise HubError(
                    f"node {route.name} refused the plan for {dataset!r} ({details}); the job "
                    "did not start and the budget of the nodes that did not accept it was "
                    "refunded"
                ) from None
            problem = _check_accepted(reply, one, job.spec.config_hash(), dataset)
            if problem is not None:
                raise HubError(f"node {route.name} answered wrongly: {problem}")
            job.accepted.add(dataset)
        self._emit(
            job,
            accepted=(
                f"job {job.job_id} accepted by {len(signed)} node(s); its budget is reserved "
                "and it starts when the training slot is free"
            ),
        )
        job.ready.set()
        with self._slot:
            result = self._federate(job, signed)
        if result.status != "completed":
            return Outcome(result, None, "aborted")
        if result.weights is None:
            return Outcome(result, None, "no-weights")
        return Outcome(result, model_file(result.weights))

    def _federate(self, job: _Job, signed: Mapping[str, SignedInstruction]) -> TrainingResult:
        if self.flower is not None:
            return self._federate_deployed(job, signed, self.flower)
        from flwr.app import Context, RecordDict

        from federation.outcome import JobOutcome, collect_result
        from federation.server_app import JobServer
        from sandbox.federated_task import ensure_task_identity
        from sandbox.hub.grid import RemoteGrid, RemoteNode

        ensure_task_identity()
        outcome = JobOutcome()
        grants = {r.dataset: r.grant_id for r in job.reservations}
        seen_failures = 0

        def failures() -> None:
            nonlocal seen_failures
            for failure in outcome.failures[seen_failures:]:
                reported = pb.NodeFailure(
                    node=failure.node, stage=failure.stage, reason=failure.reason
                )
                self._emit(job, failure=reported)
            seen_failures = len(outcome.failures)

        def on_round(rnd: int, weights: Any) -> None:
            failures()
            m = outcome.rounds[-1]
            job.rounds_done = rnd
            self._emit(
                job,
                round=round_pb(m),
            )

        server = JobServer(job.spec, job.plan, outcome, grants=grants, on_round=on_round)
        grid = RemoteGrid(
            [
                RemoteNode(d, job.routes[d].name, job.routes[d].address, signed[d])
                for d in job.spec.nodes
            ],
            self.nodes,
            min(job.spec.round_timeout_s, max(self.nodes.timeout_s, 60.0)),
        )
        try:
            server.main(grid, Context(1, 0, {}, RecordDict(), {}))
        finally:
            grid.close()
        failures()
        return collect_result(job.spec, job.plan, outcome)

    def _federate_deployed(
        self, job: _Job, signed: Mapping[str, SignedInstruction], flower: Federation
    ) -> TrainingResult:
        """Run the job over the Flower deployment; each round and the node failures before it
        are reported to the job's followers as the deployed ServerApp finishes the round."""
        from federation.result import NodeFailure, RoundMetrics
        from sandbox.deployment.runner import run_deployed

        emitted: list[tuple[str, str, str]] = []

        def failure(f: NodeFailure) -> None:
            emitted.append((f.node, f.stage, f.reason))
            self._emit(job, failure=pb.NodeFailure(node=f.node, stage=f.stage, reason=f.reason))

        def on_round(m: RoundMetrics, failures: list[NodeFailure]) -> None:
            for f in failures:
                failure(f)
            job.rounds_done = m.round
            self._emit(job, round=round_pb(m))

        grants = {r.dataset: r.grant_id for r in job.reservations}
        result = run_deployed(flower, job.spec, grants, signed, on_round=on_round)
        for f in result.failures:  # the ones after the last round (describe, evaluate)
            if (f.node, f.stage, f.reason) not in emitted:
                failure(f)
        return result

    def _on_failure(self, job: _Job, reservation: Reservation, reason: str) -> bytes | None:
        """Refund a dataset only if its node never accepted the plan (nothing ran there)."""
        if reservation.dataset not in job.accepted:
            return None
        record = {
            "status": "failed",
            "reason": reason,
            "config_hash": job.spec.config_hash(),
            "job_id": job.job_id,
            "model_sha256": None,
        }
        return json.dumps(record, sort_keys=True).encode()

    def _finish(
        self,
        job: _Job,
        result: TrainingResult | None,
        status: str,
        reason: str | None,
        indexes: Mapping[str, int],
    ) -> None:
        spent = {
            d: pb.PrivacySpent(epsilon=c.epsilon, delta=c.delta)
            for d, c in (result.spent.items() if result is not None else ())
        }
        card = None
        if result is not None and result.model_card is not None:
            card = model_card_pb(result.model_card)
        training = pb.TrainingResult(job_id=job.job_id, status=status, spent=spent)
        if card is not None:
            training.model_card.CopyFrom(card)
        if status == "completed" and result is not None and result.weights is not None:
            training.weights_format = WEIGHTS_FORMAT
            training.model_weights = model_file(result.weights)
            job.digest = release_digest(training.model_weights)
            job.result = training
        finished = pb.JobFinished(
            status=status, spent=spent, result_id=job.job_id if job.result is not None else ""
        )
        if reason:
            finished.abort_reason = reason
        if card is not None:
            finished.model_card.CopyFrom(card)
        if indexes:
            job.release_index = indexes[sorted(indexes)[0]]
            finished.log.CopyFrom(log_proof(self.authority, job.release_index))
        job.status = status
        self._emit(job, finished=finished, done=True)

    def _emit(self, job: _Job, *, done: bool = False, **event: Any) -> None:
        message = pb.JobEvent(job_id=job.job_id, timestamp_ms=int(self._clock() * 1000), **event)
        with self._changed:
            job.events.append(message)
            job.done = job.done or done
            self._changed.notify_all()

    def _job(self, firm: Principal, job_id: str) -> _Job:
        with self._changed:
            job = self._jobs.get(job_id)
        if job is None or job.firm != firm.name:
            raise UnknownJobError(f"you have no training job {job_id!r}; list yours with ListJobs")
        return job


def _check_accepted(
    reply: pb.ExecuteResponse, signed: SignedInstruction, config_hash: str, dataset: str
) -> str | None:
    """Why a node's answer is not the acceptance of exactly this plan (``None``: it is)."""
    if reply.WhichOneof("outcome") != "training_plan":
        return f"expected the plan's acceptance, got {reply.WhichOneof('outcome') or 'nothing'}"
    if reply.instruction_digest != hashlib.sha256(signed.payload).digest():
        return "the answer is for another instruction"
    if reply.training_plan.config_hash != config_hash or reply.training_plan.dataset != dataset:
        return "the node accepted another plan or dataset"
    return None
