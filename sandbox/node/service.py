"""The department node's ``sandbox.v1.NodeService``: signed instructions in, DP releases out.

:class:`NodeService` answers its RPCs, each only for a caller whose verified certificate has
the role ``hub`` (``authorize``, supplied by :mod:`sandbox.node.server`):

``Execute(SignedInstruction)``
    1. :meth:`NodeGuard.admit <sandbox.node_guard.NodeGuard.admit>` verifies the signature,
       the expiry, the revocation, the nonce and the node's own per-grant and per-dataset
       spend, and reserves the spend with the nonce in one transaction. A refusal is a gRPC
       error (``PERMISSION_DENIED``, ``FAILED_PRECONDITION`` or ``RESOURCE_EXHAUSTED``, the
       guard's code in the trailing metadata ``sandbox-refusal``); nothing is reserved.
    2. A ``query`` runs exactly the signed SQL at exactly the signed (epsilon, delta) through
       the query engine: plan, check that it reads the signed dataset, prepare (suppressing
       every group whose noisy row count is below the signed ``min_group_size``), check that
       the calibrated loss does not exceed the signed loss, release.
    3. The admission is settled: kept after a release; given back (``NotReleased`` in the
       answer) only when the query was refused before any mechanism ran. A failure inside the
       mechanism keeps the charge and is an ``INTERNAL`` error.
``Revoke(notice)``
    The authority's signed revocation notice, verified and recorded by
    :meth:`NodeGuard.revoke <sandbox.node_guard.NodeGuard.revoke>`; the guard then refuses
    every instruction of that grant (``revoked``). A bad signature is ``PERMISSION_DENIED``.
``ReportMetadata``
    The catalog's public metadata, the authority key the node trusts and its own spend, and
    the node as a witness: its witness public key, name and the last head it cosigned; each
    dataset's Flower SuperNode public key (made at first use), registered by the hub.
``Witness(WitnessRequest)``
    Cosign the hub's signed tree head with the node's witness key, only if the authority
    signed it and the consistency proof shows it extends the last head this node cosigned
    (:mod:`sandbox.node.witness`). A refusal is ``FAILED_PRECONDITION`` with the reason, and
    a warning in the node's log.

The query engine (and OpenDP) is imported and each dataset's context is built at first use,
so a node starts without loading any data.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import grpc  # type: ignore[import-untyped,unused-ignore]

from policies.errors import WitnessError
from policies.instructions import SignedMessage
from policies.keys import key_id
from policies.loss import DELTA_UNITS, EPS_UNITS, LossUnits, PrivacyLoss, units_fit
from sandbox.catalog import Catalog
from sandbox.credentials import Principal
from sandbox.errors import InstructionRefused, SandboxError
from sandbox.node.convert import dataset_metadata_message, query_result_message
from sandbox.node.witness import NodeWitness, cosignature_pb, tree_head_pb
from sandbox.node_guard import Admission, NodeGuard
from sandbox.protocol import PROTOCOL_VERSION
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from sandbox.query import PreparedQuery, QueryEngine

log = logging.getLogger(__name__)

#: Trailing metadata key carrying the guard's refusal code (``signature``, ``replayed``, ...).
REFUSAL_METADATA = "sandbox-refusal"

#: The gRPC status for each of the guard's refusal codes.
REFUSAL_STATUS: dict[str, grpc.StatusCode] = {
    "signature": grpc.StatusCode.PERMISSION_DENIED,
    "malformed": grpc.StatusCode.PERMISSION_DENIED,
    "revoked": grpc.StatusCode.PERMISSION_DENIED,
    "stale_grant": grpc.StatusCode.PERMISSION_DENIED,
    "replayed": grpc.StatusCode.PERMISSION_DENIED,
    "not_yet_valid": grpc.StatusCode.FAILED_PRECONDITION,
    "expired": grpc.StatusCode.FAILED_PRECONDITION,
    "lifetime": grpc.StatusCode.FAILED_PRECONDITION,
    "grant_expired": grpc.StatusCode.FAILED_PRECONDITION,
    "no_dataset_cap": grpc.StatusCode.FAILED_PRECONDITION,
    "grant_budget": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "dataset_budget": grpc.StatusCode.RESOURCE_EXHAUSTED,
}

TRAINING_NOT_SERVED = (
    "training runs through the Flower deployment (not yet served by the node service); "
    "nothing was run and nothing was charged"
)

#: Reads the caller's principal from a gRPC context, aborting the call if it has none.
Authorize = Callable[[Any], Principal]


class TaskRunner(Protocol):
    """Runs federated-training tasks on this node's data (``sandbox.node.tasks``)."""

    def accept(self, admission: Admission, digest: bytes, context: Any) -> pb.ExecuteResponse:
        """Record an admitted job instruction's plan as approved on this node (or refuse it:
        then settle the admission as not released)."""
        ...

    def run(self, request: pb.RunTaskRequest, context: Any) -> pb.RunTaskResponse: ...


class _NotRun(Exception):
    """The query was refused before any mechanism ran (nothing left the node)."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class NodeService(pb_grpc.NodeServiceServicer):
    """Serves one node's catalog under its :class:`NodeGuard`.

    ``authorize(context)`` returns the verified caller or aborts the call; every RPC then
    requires the role ``hub``. ``node`` is the node's name (from its own certificate).
    """

    def __init__(
        self,
        catalog: Catalog,
        guard: NodeGuard,
        authority_key_id: str,
        node: str,
        authorize: Authorize,
    ) -> None:
        self.catalog = catalog
        self.guard = guard
        self.authority_key_id = authority_key_id
        self.node = node
        self._authorize = authorize
        self._engine: QueryEngine | None = None
        self._engine_lock = threading.Lock()
        #: Federated-training tasks; ``None``: ``RunTask`` answers ``UNIMPLEMENTED``.
        self.tasks: TaskRunner | None = None
        #: The node as a witness of the log; ``None``: ``Witness`` answers ``UNIMPLEMENTED``.
        self.witnessing: NodeWitness | None = None

    @classmethod
    def open(
        cls,
        catalog_dir: Path | str,
        state_dir: Path | str,
        authority_public_key: Any,
        node: str,
        authorize: Authorize,
    ) -> NodeService:
        """Read the catalog's manifests (not the data) and open the guard's store."""
        from sandbox.catalog import load_catalog

        catalog = load_catalog(catalog_dir)
        guard = NodeGuard(state_dir, authority_public_key)
        return cls(catalog, guard, key_id(authority_public_key), node, authorize)

    # -- the query engine, built at first use --------------------------------------------------

    def engine(self) -> QueryEngine:
        """The node's query engine (imports OpenDP on first call; data loads per dataset)."""
        with self._engine_lock:
            if self._engine is None:
                from sandbox.query import QueryEngine

                self._engine = QueryEngine(self.catalog)
            return self._engine

    # -- RPCs -----------------------------------------------------------------------------------

    def Execute(  # gRPC's method name
        self, request: pb.ExecuteRequest, context: Any
    ) -> pb.ExecuteResponse:
        self._require_hub(context)
        signed_pb = request.instruction
        payload = bytes(signed_pb.instruction)
        digest = hashlib.sha256(payload).digest()
        signed = SignedMessage(payload, bytes(signed_pb.signature), signed_pb.key_id)
        try:
            admission = self.guard.admit(signed)
        except InstructionRefused as exc:
            status = REFUSAL_STATUS.get(exc.code, grpc.StatusCode.PERMISSION_DENIED)
            context.set_trailing_metadata(((REFUSAL_METADATA, exc.code),))
            abort_with(context, status, str(exc))
        instr = admission.instruction
        if instr.kind != "query" and self.tasks is not None:
            return self.tasks.accept(admission, digest, context)
        if instr.kind != "query":
            self.guard.settle(admission, released=False)
            context.set_trailing_metadata(((REFUSAL_METADATA, "not_served"),))
            abort_with(context, grpc.StatusCode.FAILED_PRECONDITION, TRAINING_NOT_SERVED)
        try:
            prepared = self._prepare(admission)
        except _NotRun as exc:
            self.guard.settle(admission, released=False)
            return pb.ExecuteResponse(
                instruction_digest=digest,
                not_released=pb.NotReleased(code=exc.code, reason=_one_line(exc.reason)),
                spent=pb.PrivacySpent(epsilon=0.0, delta=0.0),
            )
        try:
            result = prepared.release()
        except Exception as exc:  # the mechanism may have run: the charge stays
            self.guard.settle(admission, released=True)
            log.error("release of instruction %s failed: %s", instr.nonce, exc)
            abort_with(
                context,
                grpc.StatusCode.INTERNAL,
                f"the release of instruction {instr.nonce} failed inside the mechanism; the "
                "node kept the charge (it cannot confirm nothing was released); send a new "
                "instruction, and report it if it persists",
            )
        self.guard.settle(admission, released=True)
        return pb.ExecuteResponse(
            instruction_digest=digest,
            query_result=query_result_message(result),
            spent=pb.PrivacySpent(
                epsilon=instr.epsilon / EPS_UNITS, delta=instr.delta / DELTA_UNITS
            ),
            release_digest=result.digest(),
        )

    def ReportMetadata(  # gRPC's method name
        self, request: pb.ReportMetadataRequest, context: Any
    ) -> pb.ReportMetadataResponse:
        self._require_hub(context)
        reply = pb.ReportMetadataResponse(
            node=self.node,
            datasets=[dataset_metadata_message(m, self.node) for m in self.catalog],
            authority_key_id=self.authority_key_id,
            spends=self.spends(),
            protocol=PROTOCOL_VERSION,
            flower_keys=self.flower_keys(),
        )
        if self.witnessing is not None:
            reply.witness_key_pem = self.witnessing.public_key_pem()
            reply.witness_name = self.witnessing.name
            last = self.witnessing.last_head()
            if last is not None:
                reply.last_witnessed_head.CopyFrom(tree_head_pb(last))
        return reply

    def flower_keys(self) -> dict[str, str]:
        """Each dataset's Flower SuperNode public key (OpenSSH), made at first use under the
        node's state (:func:`~sandbox.deployment.processes.node_key`): the hub registers it with
        its SuperLink when the dataset is registered."""
        from sandbox.deployment.processes import node_key

        return {
            m.name: node_key(self.guard.state_dir, m.name)[1].read_text(encoding="utf-8").strip()
            for m in self.catalog
        }

    def Witness(  # gRPC's method name
        self, request: pb.WitnessRequest, context: Any
    ) -> pb.WitnessResponse:
        """Cosign the hub's tree head if it extends the last one this node cosigned."""
        self._require_hub(context)
        if self.witnessing is None:
            abort_with(context, grpc.StatusCode.UNIMPLEMENTED, "this node does not witness")
        assert self.witnessing is not None
        try:
            cos = self.witnessing.witness(request)
        except WitnessError as exc:
            log.warning("tree head of size %d refused: %s", request.tree_head.size, exc)
            abort_with(context, grpc.StatusCode.FAILED_PRECONDITION, _one_line(exc))
        return pb.WitnessResponse(cosignature=cosignature_pb(cos), last_size=cos.size)

    def Revoke(  # gRPC's method name
        self, request: pb.NodeRevokeRequest, context: Any
    ) -> pb.NodeRevokeResponse:
        """Record the authority's signed revocation notice (the guard verifies it); from then
        on this node refuses every instruction of that grant itself."""
        self._require_hub(context)
        notice = request.notice
        signed = SignedMessage(bytes(notice.instruction), bytes(notice.signature), notice.key_id)
        try:
            recorded = self.guard.revoke(signed)
        except InstructionRefused as exc:
            context.set_trailing_metadata(((REFUSAL_METADATA, exc.code),))
            abort_with(context, grpc.StatusCode.PERMISSION_DENIED, str(exc))
        row = (
            self.guard.db.conn()
            .execute("SELECT payload FROM revocations WHERE grant_id = ?", (recorded.grant_id,))
            .fetchone()
        )
        newly = row is not None and bytes(row[0]) == signed.payload  # not an earlier notice
        log.info("grant %s revoked by the authority's notice", recorded.grant_id)
        return pb.NodeRevokeResponse(grant_id=recorded.grant_id, newly_revoked=newly)

    def RunTask(  # gRPC's method name
        self, request: pb.RunTaskRequest, context: Any
    ) -> pb.RunTaskResponse:
        self._require_hub(context)
        if self.tasks is None:
            abort_with(
                context, grpc.StatusCode.UNIMPLEMENTED, "this node does not run training tasks"
            )
        assert self.tasks is not None
        return self.tasks.run(request, context)

    # -- helpers --------------------------------------------------------------------------------

    def _require_hub(self, context: Any) -> Principal:
        principal = self._authorize(context)
        if principal.role != "hub":
            abort_with(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{principal} may not call a department node: only the hub (a certificate with "
                "the role hub) sends it instructions",
            )
        return principal

    def _prepare(self, admission: Admission) -> PreparedQuery:
        """Plan and calibrate exactly the signed SQL at exactly the signed loss, or _NotRun."""
        instr = admission.instruction
        assert instr.sql is not None  # a query instruction always carries its SQL
        epsilon, delta = instr.epsilon / EPS_UNITS, instr.delta / DELTA_UNITS
        try:
            engine = self.engine()
            plan = engine.plan(instr.sql)
            if plan.dataset != instr.dataset:
                raise _NotRun(
                    "dataset_mismatch",
                    f"the signed SQL reads {plan.dataset!r} but the instruction was signed for "
                    f"{instr.dataset!r}; the authority must sign an instruction for the dataset "
                    "the SQL reads",
                )
            prepared = engine.prepare(plan, epsilon, delta, min_group_size=instr.min_group_size)
        except _NotRun:
            raise
        except SandboxError as exc:
            raise _NotRun(_refusal_code(exc), str(exc)) from None
        except Exception as exc:  # nothing ran yet: nothing can have been released
            log.error("instruction %s could not be prepared: %r", instr.nonce, exc)
            raise _NotRun(
                "internal",
                f"the node could not prepare the query ({type(exc).__name__}); nothing was "
                "released; report it to the department",
            ) from None
        needed = PrivacyLoss.spent(prepared.epsilon, prepared.delta).units
        if not units_fit(needed, LossUnits(instr.epsilon, instr.delta, None)):
            raise _NotRun(
                "loss_exceeds_signed",
                f"the query would spend epsilon {prepared.epsilon:g}, delta "
                f"{prepared.delta:g}, more than the signed epsilon {epsilon:g}, delta "
                f"{delta:g}; the authority must sign the calibrated loss",
            )
        return prepared

    def spends(self) -> list[pb.NodeSpend]:
        """The node's own spend per (grant, dataset), and per dataset against its cap."""
        conn = self.guard.db.conn()
        out = [
            pb.NodeSpend(
                grant_id=grant_id,
                dataset=dataset,
                epsilon_spent=eps / EPS_UNITS,
                delta_spent=dlt / DELTA_UNITS,
            )
            for grant_id, dataset, eps, dlt in conn.execute(
                "SELECT grant_id, dataset, epsilon, delta FROM grant_spend "
                "ORDER BY grant_id, dataset"
            )
        ]
        for dataset, cap_eps, cap_dlt in conn.execute(
            "SELECT dataset, epsilon, delta FROM dataset_caps ORDER BY dataset"
        ):
            spent = self.guard.dataset_spent(dataset)
            out.append(
                pb.NodeSpend(
                    grant_id="",
                    dataset=dataset,
                    epsilon_spent=spent.epsilon / EPS_UNITS,
                    delta_spent=spent.delta / DELTA_UNITS,
                    epsilon_cap=cap_eps / EPS_UNITS,
                    delta_cap=cap_dlt / DELTA_UNITS,
                )
            )
        return out


def _refusal_code(exc: SandboxError) -> str:
    """A short code for a query refused before any mechanism ran."""
    name = type(exc).__name__
    return {
        "UnsupportedQuery": "unsupported_query",
        "UnknownColumn": "unknown_column",
        "MissingBounds": "missing_bounds",
        "PrivacyParameterError": "privacy_parameters",
        "CatalogError": "unknown_dataset",
        "ManifestError": "data_unavailable",
    }.get(name, "refused")


def abort_with(context: Any, status: grpc.StatusCode, message: str) -> NoReturn:
    """Abort the call with ``status`` and a one-line ``message`` (never returns)."""
    context.abort(status, _one_line(message))
    raise AssertionError("context.abort returned")  # pragma: no cover
