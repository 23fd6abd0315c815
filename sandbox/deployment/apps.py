"""The deployed ``ServerApp`` and ``ClientApp``: wrappers around
:mod:`federation.server_app` and :mod:`federation.client_app` for real SuperLink / SuperNode
processes (the FAB in ``sandbox/deployment/fab`` points at these two objects).

Server side (runs in the SuperLink's ``flwr-serverapp`` process). The run config names a job
file (``job-file``: the job's canonical JSON, the public row counts and the grants, written by
:func:`sandbox.deployment.runner.run_deployed`) and an outcome directory (``outcome-dir``).
The app plans the job again from the same inputs (planning is deterministic), runs a
:class:`~federation.server_app.JobServer` over a :class:`FastGrid` and writes the
:class:`~federation.outcome.JobOutcome` as ``outcome.json`` + ``weights.npz``.

Client side (runs in the SuperNode's ``flwr-clientapp`` process, on the node's machine). The
node config names the node's dataset (``node-name``), its catalog (``catalog-dir``), the node's
state directory (``node-state``, the ``--state`` of ``sandbox node serve``) and the authority's
public key (``authority-key``, a PEM file). Every message carries the job's signed ``train``
instructions (record ``instruction``: dataset -> the signed instruction as JSON, added by
:class:`FastGrid` from the job file). The ClientApp takes its own dataset's instruction and
hands the rest of the message to :meth:`sandbox.node.tasks.NodeTasks.run_task`, the checks of
``NodeService.RunTask``: the authority's signature, kind ``train``, grant neither revoked nor
expired, dataset held, the plan accepted by this node (``Execute``), the message's
configuration exactly the signed plan (job hash, no public row counts, the signed grant, the
round within the job). Anything else is refused before a row is read; the reply is an error
naming the refusal. Data is read only through the node's own
:class:`~sandbox.training.CatalogLoader` and counted in its own store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, ConfigRecordValues, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp

from federation.node_authorization import NODE_NAME_KEY
from federation.outcome import JobOutcome
from federation.result import NodeFailure, RoundMetrics

__all__ = [
    "AUTHORITY_KEY_KEY",
    "CATALOG_DIR_KEY",
    "INSTRUCTION_RECORD",
    "NODE_STATE_KEY",
    "FastGrid",
    "ProgressReader",
    "ProgressWriter",
    "client_app",
    "read_outcome",
    "server_app",
    "write_outcome",
]

#: Node config keys of a deployed SuperNode (besides ``node-name``).
CATALOG_DIR_KEY = "catalog-dir"
NODE_STATE_KEY = "node-state"
AUTHORITY_KEY_KEY = "authority-key"
#: The message record carrying the job's signed instructions (dataset -> JSON).
INSTRUCTION_RECORD = "instruction"
#: The record of a roll call (:meth:`FastGrid.get_node_ids`) and how long it waits.
ROLL_CALL_RECORD = "roll-call"
ROLL_CALL_TIMEOUT_S = 30.0
OUTCOME_FILE = "outcome.json"
WEIGHTS_FILE = "weights.npz"
#: One JSON line per finished round (its metrics and the node failures seen so far), written by
#: the deployed ServerApp as the job runs, so the hub can report rounds live.
PROGRESS_FILE = "rounds.jsonl"
#: How often the deployed ServerApp asks the SuperLink for replies. Flower's HTTP grid sleeps
#: 3 s between pulls inside ``send_and_receive``; :class:`FastGrid` uses the public
#: ``push_messages`` / ``pull_messages`` instead.
PULL_INTERVAL_S = 0.02


class FastGrid:
    """A :class:`flwr.serverapp.Grid` for the deployed job.

    * ``send_and_receive`` polls every ``pull_interval`` seconds (built on the grid's public
      ``push_messages`` and ``pull_messages``);
    * with ``instructions`` (dataset -> the signed instruction's JSON): ``get_node_ids`` asks
      each new SuperNode its dataset once (a roll call: the node answers its dataset's name,
      public metadata, and reads nothing) and lists only the nodes of the job's datasets; every
      message carries its node's instruction in the record :data:`INSTRUCTION_RECORD`.

    Everything else is the wrapped grid's."""

    def __init__(
        self,
        grid: Grid,
        pull_interval: float = PULL_INTERVAL_S,
        instructions: Mapping[str, str] | None = None,
    ) -> None:
        self._grid = grid
        self.pull_interval = pull_interval
        self.instructions = dict(instructions or {})
        self.datasets: dict[int, str] = {}  # Flower node id -> the dataset it answered
        self._destinations: dict[str, int] = {}  # message id -> its node

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def get_node_ids(self) -> Iterable[int]:
        ids = list(self._grid.get_node_ids())
        if not self.instructions:
            return ids
        new = [nid for nid in ids if nid not in self.datasets]
        if new:
            from flwr.app import MessageType

            calls = [
                Message(RecordDict({ROLL_CALL_RECORD: ConfigRecord({})}), nid, MessageType.QUERY)
                for nid in new
            ]
            for reply in self.send_and_receive(calls, timeout=ROLL_CALL_TIMEOUT_S):
                if not reply.has_error():
                    name = str(reply.content.config_records["node"][NODE_NAME_KEY])
                    self.datasets[reply.metadata.src_node_id] = name
        return [nid for nid in ids if self.datasets.get(nid) in self.instructions]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch = []
        for message in messages:
            if ROLL_CALL_RECORD in message.content or not self.instructions:
                batch.append(message)
                continue
            meta = message.metadata
            dataset = self.datasets.get(meta.dst_node_id)
            carried: dict[str, ConfigRecordValues] = {}
            if dataset is not None and dataset in self.instructions:
                carried[dataset] = self.instructions[dataset]  # its own only, once known
            else:
                carried.update(self.instructions)
            # A strategy may give every node the same content object: each gets its own.
            content = RecordDict(dict(message.content.items()))
            content[INSTRUCTION_RECORD] = ConfigRecord(carried)
            batch.append(
                Message(
                    content,
                    meta.dst_node_id,
                    meta.message_type,
                    ttl=meta.ttl,
                    group_id=meta.group_id,
                )
            )
        ids = list(self._grid.push_messages(batch))
        self._destinations.update(zip(ids, (m.metadata.dst_node_id for m in batch), strict=True))
        return ids

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self._grid.pull_messages(pending))
            for reply in got:
                # An error the SuperLink made (the node is unavailable) names the SuperLink as
                # its source: name the node the message went to, so it is charged and reported.
                dst = self._destinations.pop(reply.metadata.reply_to_message_id, None)
                if dst is not None and reply.metadata.src_node_id != dst:
                    reply.metadata.__dict__["_src_node_id"] = dst
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (end is not None and time.monotonic() >= end):
                break
            time.sleep(self.pull_interval)
        for message_id in pending:
            self._destinations.pop(message_id, None)
        return replies


# --- the outcome file ---------------------------------------------------------------------------


def write_outcome(outcome: JobOutcome, directory: str | Path) -> None:
    """Write ``outcome`` into ``directory`` (weights as ``.npz``, the rest as JSON)."""
    out = Path(directory)
    fields = dataclasses.asdict(outcome)
    weights = fields.pop("weights")
    fields.pop("round_weights")
    if weights is not None:
        tmp = out / (WEIGHTS_FILE + ".part.npz")
        np.savez(tmp, **weights)
        os.replace(tmp, out / WEIGHTS_FILE)
    fields["has_weights"] = weights is not None
    tmp_json = out / (OUTCOME_FILE + ".part")
    tmp_json.write_text(json.dumps(fields), encoding="utf-8")
    os.replace(tmp_json, out / OUTCOME_FILE)  # last: its presence means the run is over


class ProgressWriter:
    """Appends each finished round of ``outcome`` to ``directory/rounds.jsonl`` (a JobServer's
    ``on_round``): the round's metrics and the failures not written before."""

    def __init__(self, outcome: JobOutcome, directory: str | Path) -> None:
        self.outcome, self.path, self.failures_written = outcome, Path(directory), 0

    def __call__(self, rnd: int, _weights: object) -> None:
        failures = self.outcome.failures[self.failures_written :]
        self.failures_written = len(self.outcome.failures)
        line = {
            "round": dataclasses.asdict(self.outcome.rounds[-1]),
            "failures": [dataclasses.asdict(f) for f in failures],
        }
        with (self.path / PROGRESS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


class ProgressReader:
    """Reads the rounds the deployed ServerApp has written so far (:class:`ProgressWriter`)."""

    def __init__(self, directory: str | Path) -> None:
        self.path, self.offset = Path(directory) / PROGRESS_FILE, 0

    def new(self) -> list[tuple[RoundMetrics, list[NodeFailure]]]:
        """The rounds written since the last call (only whole lines)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]
        self.offset += len(whole)
        out = []
        for raw in whole.splitlines():
            line = json.loads(raw)
            out.append(
                (_round_from_json(line["round"]), [NodeFailure(**f) for f in line["failures"]])
            )
        return out


def _round_from_json(r: Mapping[str, Any]) -> RoundMetrics:
    return RoundMetrics(**{**r, "nodes": tuple(r["nodes"]), "failed": tuple(r["failed"])})


def read_outcome(directory: str | Path) -> JobOutcome | None:
    """The outcome written by the deployed ServerApp, or None if it has not finished."""
    path = Path(directory) / OUTCOME_FILE
    if not path.exists():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    has_weights = bool(fields.pop("has_weights"))
    fields["rounds"] = [_round_from_json(r) for r in fields["rounds"]]
    fields["failures"] = [NodeFailure(**f) for f in fields["failures"]]
    if has_weights:
        with np.load(Path(directory) / WEIGHTS_FILE) as npz:
            fields["weights"] = {k: npz[k] for k in npz.files}
    return JobOutcome(**fields)


# --- the apps -----------------------------------------------------------------------------------

server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    from federation.accounting import plan_job
    from federation.job import JobSpec
    from federation.server_app import JobServer

    job = json.loads(Path(str(context.run_config["job-file"])).read_text(encoding="utf-8"))
    spec = JobSpec.parse(job["job"])
    rows = job.get("rows") or None
    outcome = JobOutcome()
    progress = ProgressWriter(outcome, str(context.run_config["outcome-dir"]))
    server = JobServer(spec, plan_job(spec, rows), outcome, grants=job["grants"], on_round=progress)
    grid = FastGrid(grid, instructions=job.get("instructions") or {})  # type: ignore[assignment]
    try:
        server.main(grid, context)
    finally:
        write_outcome(outcome, str(context.run_config["outcome-dir"]))


client_app = ClientApp()


def _node_tasks(context: Context) -> Any:
    """The node's :class:`~sandbox.node.tasks.NodeTasks` over its catalog and state."""
    from policies.keys import load_public_key
    from sandbox.node.service import NodeService
    from sandbox.node.tasks import NodeTasks

    config = context.node_config
    key = load_public_key(Path(str(config[AUTHORITY_KEY_KEY])))
    state = str(config[NODE_STATE_KEY])

    def no_rpc(_: Any) -> Any:  # the ClientApp serves no gRPC call
        raise PermissionError("no RPC is served by the deployed ClientApp")

    service = NodeService.open(
        str(config[CATALOG_DIR_KEY]), state, key, str(config[NODE_NAME_KEY]), no_rpc
    )
    return NodeTasks(service, key, state)


def handle(message: Message, context: Context) -> Message:
    """Check ``message`` against this node's signed, accepted plan and run it (module doc).
    A refusal or a failure is an error reply; nothing of the node's data goes with it."""
    from policies.errors import InstructionError
    from policies.instructions import SignedMessage
    from sandbox.errors import SandboxError, TaskFormatError
    from sandbox.federated_task import check_reply, content_from_task, task_from_content
    from sandbox.node.tasks import TaskRefused
    from sandbox.protocol.v1 import sandbox_pb2 as pb

    name = str(context.node_config.get(NODE_NAME_KEY, "?"))

    def refused(reason: str) -> Message:
        text = f"node {name} refused the message: {reason}"
        return Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, text), reply_to=message)

    content = message.content
    if ROLL_CALL_RECORD in content.config_records:  # the dataset's name only, no data read
        return Message(RecordDict({"node": ConfigRecord({NODE_NAME_KEY: name})}), reply_to=message)
    try:
        signed_json = str(content.config_records[INSTRUCTION_RECORD][name])
        signed = SignedMessage.from_json(json.loads(signed_json))
    except (KeyError, ValueError, InstructionError):
        return refused("it carries no signed instruction for this node's dataset")
    rest = RecordDict({k: v for k, v in content.items() if k != INSTRUCTION_RECORD})
    try:
        task = task_from_content(rest, message.metadata.message_type, message.metadata.group_id)
        reply = _node_tasks(context).run_task(
            pb.SignedInstruction(
                instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
            ),
            task,
        )
        check_reply(reply, name)
    except TaskRefused as exc:
        return refused(f"{exc} ({exc.code})")
    except (TaskFormatError, SandboxError) as exc:
        return refused(str(exc))
    if reply.error:
        return refused(reply.error)
    return Message(content_from_task(reply), reply_to=message)


client_app = ClientApp()


@client_app.query()
def _query(message: Message, context: Context) -> Message:
    return handle(message, context)


@client_app.train()
def _train(message: Message, context: Context) -> Message:
    return handle(message, context)


@client_app.evaluate()
def _evaluate(message: Message, context: Context) -> Message:
    return handle(message, context)
