"""Run a federated job in this process: the same ``ServerApp`` against the same ``ClientApp``,
without Ray or any network, for tests and quick runs.

:class:`InProcessGrid` is a Flower ``Grid`` whose ``send_and_receive`` hands each message to the
``ClientApp`` of its destination node, in turn, with that node's own ``Context`` (its partition
id, as in simulation). A node that raises answers with an error reply, as Flower's simulation
engine does, so failures are recorded the same way. :func:`run_inprocess` takes the same
arguments as :func:`federation.simulation.run_simulation` (``backend_config`` is ignored).

>>> from federation.client_app import make_client_app
>>> list(InProcessGrid(make_client_app({}), num_nodes=2).get_node_ids())
[100, 101]
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from federation.accounting import JobPlan, PrivacyCost
from federation.job import JobSpec
from federation.loader import Loader
from federation.outcome import Weights
from federation.result import TrainingResult
from federation.runner import run_job

#: Flower node id of the first in-process node (the others follow).
FIRST_NODE_ID = 100
RUN_ID = 1


class InProcessGrid(Grid):
    """A ``Grid`` that delivers every message to a ``ClientApp`` in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(RUN_ID)
        self.contexts = {
            FIRST_NODE_ID + i: Context(
                run_id=RUN_ID,
                node_id=FIRST_NODE_ID + i,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(num_nodes)
        }
        self.replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def deliver(self, message: Message) -> Message | None:
        """The reply of the destination node's ``ClientApp`` (an error reply if it raised)."""
        context = self.contexts.get(message.metadata.dst_node_id)
        if context is None:
            return None  # no such node: no reply, as with a node that is down
        try:
            reply = self.client_app(message, context)
        except Exception as exc:  # a failing node answers with an error, as in simulation
            reason = f"{type(exc)}:<'{exc}'>"
            reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message)
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = str(uuid.uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            reply = self.deliver(message)
            if reply is not None:
                self.replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self.replies.pop(i) for i in message_ids if i in self.replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def inprocess_engine(server_app: ServerApp, client_app: ClientApp, num_nodes: int) -> None:
    """Run ``server_app`` to completion against ``num_nodes`` in-process nodes."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = RUN_ID
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    threads = torch.get_num_threads()  # a node's training sets one thread; give it back
    context = Context(RUN_ID, SUPERLINK_NODE_ID, {}, RecordDict(), {})
    try:
        server_app(InProcessGrid(client_app, num_nodes), context)
    finally:
        torch.set_num_threads(threads)


def run_inprocess(
    spec: JobSpec,
    loaders: Mapping[str, Loader] | Loader,
    *,
    budget: PrivacyCost | Mapping[str, PrivacyCost] | None,
    rows_per_node: Mapping[str, int] | None = None,
    allow_non_private: bool = False,
    backend_config: dict[str, Any] | None = None,
    keep_round_weights: bool = False,
    on_round: Callable[[int, Weights], None] | None = None,
    node_state: str | Path | None = None,
    grants: Mapping[str, str] | None = None,
    plan: JobPlan | None = None,
) -> TrainingResult:
    """:func:`federation.simulation.run_simulation` in this process: same checks, same apps,
    same result; ``backend_config`` is accepted and ignored."""
    del backend_config
    return run_job(
        spec,
        loaders,
        inprocess_engine,
        budget=budget,
        rows_per_node=rows_per_node,
        allow_non_private=allow_non_private,
        keep_round_weights=keep_round_weights,
        on_round=on_round,
        node_state=node_state,
        grants=grants,
        plan=plan,
    )
