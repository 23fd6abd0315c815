"""A department node's federated-training tasks: the :class:`~sandbox.node.service.TaskRunner`
behind ``NodeService.Execute`` (kind ``train``) and ``NodeService.RunTask``.

Accepting a plan (``Execute`` with a signed ``train`` instruction, after
:meth:`NodeGuard.admit <sandbox.node_guard.NodeGuard.admit>` verified it and reserved its
signed (epsilon, delta) in the node's own spend): :meth:`NodeTasks.accept` checks that the
node holds the dataset, records the acceptance (nonce, grant, dataset, plan digest, steps,
loss) in ``STATE/training/tasks.db`` and settles the admission as released: the spend stays on
the node whatever happens next. It answers ``TrainingPlanAccepted``. A refusal gives the
admission back and aborts the call.

Running a task (``RunTask``): :meth:`NodeTasks.run` trusts nothing the hub sends.

1. It verifies the request's signed instruction itself: the authority's signature, kind
   ``train``, the grant neither revoked (:meth:`NodeGuard.is_revoked`) nor past its validity,
   the dataset held here, and an acceptance of exactly this instruction recorded above.
2. The task's configuration must name exactly the signed plan: the job whose
   ``config_hash()`` is the signed ``plan_digest``, no public row counts, and the signed grant
   for this dataset. Any other value is refused (``PERMISSION_DENIED``), nothing runs.
3. The first task of an accepted instruction plans the job on the node
   (:func:`~federation.accounting.plan_job`), checks that the plan's steps are the signed
   ``max_steps`` and its predicted loss within the signed loss, and records the
   :class:`~federation.approval.Approval` in the node's
   :class:`~federation.node_store.NodeStore` (once per accepted instruction).
4. The task becomes a Flower ``Message`` whose configuration the node builds from the checked
   plan, and runs through :func:`~federation.client_app.handle_query`, ``handle_train`` or
   ``handle_evaluate`` with the node's own loader (:class:`~sandbox.training.CatalogLoader`
   over its catalog) and store, which count every DP-SGD step, row-count release and
   evaluation before they run.
5. Only the DP-SGD weights, the DP metrics and the node's name go back
   (:func:`sandbox.federated_task.check_reply`). A failure after the checks is a reply with
   ``error`` set (the steps it counted stay counted).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.db import Database, private_dir
from policies.errors import InstructionError, InstructionSignatureError
from policies.instructions import Instruction, SignedMessage, verify_signed
from policies.loss import DELTA_UNITS, EPS_UNITS, PrivacyLoss, units_fit
from sandbox.node.service import REFUSAL_METADATA, abort_with
from sandbox.node_guard import Admission
from sandbox.protocol.v1 import sandbox_pb2 as pb

if TYPE_CHECKING:
    from federation.job import JobSpec
    from sandbox.node.service import NodeService

log = logging.getLogger(__name__)

#: Where training state lives inside the node's state directory.
TRAINING_DIR = "training"
TASKS_DB = "tasks.db"
#: The configuration keys a task may carry (in its one record, ``config``).
CONFIG_KEYS = frozenset({"job", "rows", "grants", "server-round", "proximal-mu"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
    nonce TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    dataset TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    max_steps INTEGER NOT NULL,
    epsilon INTEGER NOT NULL,
    delta INTEGER NOT NULL,
    accepted_at_ms INTEGER NOT NULL,
    approved INTEGER NOT NULL DEFAULT 0
)
"""


class TaskRefused(Exception):
    """A task or plan refused by the node's checks: the gRPC ``status`` it maps to, a short
    refusal ``code`` and the message for the hub. Raised by :meth:`NodeTasks.run_task`, which
    needs no gRPC context (the deployed ClientApp calls it, :mod:`sandbox.deployment.apps`)."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


_Refused = TaskRefused


class NodeTasks:
    """Training tasks for one node: ``service`` (its catalog, guard and name), the authority's
    public key and the node's state directory (training state in ``STATE/training``)."""

    def __init__(
        self, service: NodeService, authority_key: Ed25519PublicKey, state_dir: Path | str
    ) -> None:
        self.service = service
        self._key = authority_key
        self.root = private_dir(Path(state_dir) / TRAINING_DIR)
        self.db = Database(self.root / TASKS_DB)
        self.db.script(_SCHEMA)
        self._run_lock = threading.Lock()  # one task at a time: DP-SGD uses the node's CPU

    # -- Execute(kind train) --------------------------------------------------------------------

    def accept(self, admission: Admission, digest: bytes, context: Any) -> pb.ExecuteResponse:
        """Record an admitted ``train`` instruction's plan as accepted (see the module doc)."""
        instr = admission.instruction
        try:
            if instr.kind != "train" or instr.plan_digest is None or instr.max_steps is None:
                raise _Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "not_served",
                    f"this node accepts training plans as signed train instructions, not "
                    f"{instr.kind}; the authority must sign the job's train instruction",
                )
            self._held(instr)
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO accepted (nonce, grant_id, dataset, plan_digest, max_steps, "
                    "epsilon, delta, accepted_at_ms) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        instr.nonce,
                        instr.grant_id,
                        instr.dataset,
                        instr.plan_digest,
                        instr.max_steps,
                        instr.epsilon,
                        instr.delta,
                        int(time.time() * 1000),
                    ),
                )
        except _Refused as exc:
            self.service.guard.settle(admission, released=False)
            context.set_trailing_metadata(((REFUSAL_METADATA, exc.code),))
            abort_with(context, exc.status, str(exc))
        self.service.guard.settle(admission, released=True)  # the spend stays on the node
        return pb.ExecuteResponse(
            instruction_digest=digest,
            training_plan=pb.TrainingPlanAccepted(
                config_hash=instr.plan_digest, dataset=instr.dataset
            ),
            spent=pb.PrivacySpent(
                epsilon=instr.epsilon / EPS_UNITS, delta=instr.delta / DELTA_UNITS
            ),
        )

    # -- RunTask --------------------------------------------------------------------------------

    def run(self, request: pb.RunTaskRequest, context: Any) -> pb.RunTaskResponse:
        """Check the task against the signed, accepted plan and run it on this node's data."""
        try:
            reply = self.run_task(request.instruction, request.task)
        except TaskRefused as exc:
            context.set_trailing_metadata(((REFUSAL_METADATA, exc.code),))
            abort_with(context, exc.status, str(exc))
        return pb.RunTaskResponse(reply=reply)

    def run_task(self, signed: pb.SignedInstruction, task: pb.FederatedTask) -> pb.FederatedTask:
        """:meth:`run` without gRPC: :class:`TaskRefused` if the task is not exactly the
        signed, accepted plan (nothing ran); else the node's reply (``error`` set if the task
        failed after the checks)."""
        instr = self._verified(signed)
        spec, rows_json = self._checked_config(task, instr)
        self._approve_once(instr, spec)
        try:
            with self._run_lock:
                reply = self._run(task, instr, spec, rows_json)
        except Exception as exc:  # after the checks: the node reports it, the hub records it
            log.warning("task %s of %s failed: %s", task.message_type, instr.dataset, exc)
            reply = pb.FederatedTask(
                message_type=task.message_type,
                group_id=task.group_id,
                error=" ".join(f"{type(exc).__name__}: {exc}".split())[:1000],
            )
        return reply

    # -- checks ---------------------------------------------------------------------------------

    def _held(self, instr: Instruction) -> None:
        if instr.dataset not in {m.name for m in self.service.catalog}:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "unknown_dataset",
                f"this node does not hold dataset {instr.dataset!r}; route the job to the "
                "node that does",
            )

    def _verified(self, signed_pb: pb.SignedInstruction) -> Instruction:
        signed = SignedMessage(
            bytes(signed_pb.instruction), bytes(signed_pb.signature), signed_pb.key_id
        )
        try:
            instr = verify_signed(self._key, signed)
        except (InstructionSignatureError, InstructionError) as exc:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED, "signature", f"task refused: {exc}"
            ) from None
        if instr.kind != "train" or instr.plan_digest is None:
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "malformed",
                "a task runs under the job's signed train instruction; send that one",
            )
        if self.service.guard.is_revoked(instr.grant_id):
            raise _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "revoked",
                f"grant {instr.grant_id!r} is revoked; this node runs nothing more under it",
            )
        if instr.grant_valid_until_ms <= int(time.time() * 1000):
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "grant_expired",
                f"grant {instr.grant_id!r} has expired; the firm needs a new grant",
            )
        self._held(instr)
        row = (
            self.db.conn()
            .execute("SELECT plan_digest FROM accepted WHERE nonce = ?", (instr.nonce,))
            .fetchone()
        )
        if row is None or row[0] != instr.plan_digest:
            raise _Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                "not_accepted",
                "this node has not accepted the plan of this instruction; the hub must send "
                "it through Execute first",
            )
        return instr

    def _checked_config(self, task: pb.FederatedTask, instr: Instruction) -> tuple[JobSpec, str]:
        """The task's job, shown to be exactly the signed plan; refuses anything else."""
        from federation.errors import InvalidJobError
        from federation.job import JobSpec

        def refuse(what: str) -> _Refused:
            return _Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                "plan_mismatch",
                f"the task's {what} differs from the plan signed for {instr.dataset!r}; this "
                "node runs the signed plan only, nothing was run",
            )

        if task.message_type not in ("query", "train", "evaluate"):
            raise refuse("message type")
        if set(task.configs) != {"config"} or set(task.metrics):
            raise refuse("records")
        values = task.configs["config"].values
        if set(values) - CONFIG_KEYS or "job" not in values:
            raise refuse("configuration keys")
        try:
            spec = JobSpec.parse(values["job"].string_value)
        except (InvalidJobError, ValueError):
            raise refuse("job") from None
        if spec.config_hash() != instr.plan_digest or instr.dataset not in spec.nodes:
            raise refuse("job")
        rows = values["rows"].string_value if "rows" in values else "{}"
        try:
            if json.loads(rows or "{}"):
                raise refuse("public row counts")
            grants = json.loads(values["grants"].string_value) if "grants" in values else {}
        except (ValueError, RecursionError):
            raise refuse("configuration") from None
        if not isinstance(grants, dict) or grants.get(instr.dataset) != instr.grant_id:
            raise refuse("grant")
        if "server-round" in values:
            rnd = values["server-round"]
            if rnd.WhichOneof("kind") != "int_value" or not 1 <= rnd.int_value <= spec.rounds:
                raise refuse("round")
        if "proximal-mu" in values:  # FedProx repeats the job's own mu; any other is refused
            mu = values["proximal-mu"]
            if mu.WhichOneof("kind") != "float_value" or mu.float_value != spec.proximal_mu:
                raise refuse("proximal mu")
        tensors = set(task.tensors)
        if tensors != (set() if task.message_type == "query" else {"arrays"}):
            raise refuse("tensors")
        return spec, "{}"

    def _approve_once(self, instr: Instruction, spec: JobSpec) -> None:
        """Record the approval in the node store at the first task of an accepted plan."""
        from federation.accounting import plan_job
        from federation.approval import Approval
        from federation.node_store import NodeStore, node_state_dir

        with self.db.transaction() as conn:
            (approved,) = conn.execute(
                "SELECT approved FROM accepted WHERE nonce = ?", (instr.nonce,)
            ).fetchone()
            if approved:
                return
            plan = plan_job(spec)
            node = plan.nodes[instr.dataset]
            needed = PrivacyLoss.spent(
                plan.predicted[instr.dataset].epsilon, plan.predicted[instr.dataset].delta
            ).units
            if plan.total_steps(instr.dataset) != instr.max_steps or not units_fit(
                needed, instr.loss.units
            ):
                raise _Refused(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "plan_mismatch",
                    f"the job's plan for {instr.dataset!r} takes other steps or spends more "
                    "than the signed instruction allows; nothing was run",
                )
            # Marked first: a crash before the store records it approves less, never more.
            conn.execute("UPDATE accepted SET approved = 1 WHERE nonce = ?", (instr.nonce,))
        NodeStore(node_state_dir(self.root, instr.dataset)).approve(
            Approval(
                grant_id=instr.grant_id,
                dataset=instr.dataset,
                plan_digest=instr.plan_digest or "",
                max_steps=plan.total_steps(instr.dataset),
                sample_rate=node.sample_rate,
                noise_multiplier=node.noise_multiplier,
            )
        )

    # -- running --------------------------------------------------------------------------------

    def _run(
        self, task: pb.FederatedTask, instr: Instruction, spec: JobSpec, rows_json: str
    ) -> pb.FederatedTask:
        import torch
        from flwr.app import ConfigRecord, Context, Message, RecordDict

        from federation.client_app import (
            NODE_NAME_KEY,
            handle_evaluate,
            handle_query,
            handle_train,
        )
        from sandbox.federated_task import (
            check_reply,
            content_from_task,
            ensure_task_identity,
            task_from_content,
        )
        from sandbox.training import CatalogLoader

        ensure_task_identity()
        content = content_from_task(task)
        config: dict[str, Any] = {  # built from the checked plan, never copied from the hub
            "job": spec.canonical_json(),
            "rows": rows_json,
            "grants": json.dumps({instr.dataset: instr.grant_id}),
        }
        rnd = task.configs["config"].values.get("server-round")
        if rnd is not None:
            config["server-round"] = rnd.int_value
        content["config"] = ConfigRecord(config)
        message = Message(content, 0, task.message_type, group_id=task.group_id)
        context = Context(
            run_id=1,
            node_id=0,
            node_config={NODE_NAME_KEY: instr.dataset},
            state=RecordDict(),
            run_config={},
        )
        catalog_root = str(self.service.catalog.root)
        loaders = {
            instr.dataset: CatalogLoader(
                catalog_root,
                tuple(spec.features),
                spec.label,
                str(self.root),
                positive=spec.positive,
                classes=spec.classes,
            )
        }
        handler = {"query": handle_query, "train": handle_train, "evaluate": handle_evaluate}
        threads = torch.get_num_threads()
        try:
            reply = handler[task.message_type](message, context, loaders, str(self.root))
        finally:
            torch.set_num_threads(threads)
        out = task_from_content(reply.content, task.message_type, task.group_id)
        check_reply(out, self.service.node)
        return out
