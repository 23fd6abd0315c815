"""A Flower ``Grid`` whose nodes are department nodes reached over ``NodeService.RunTask``.

:class:`RemoteGrid` is what :class:`federation.inprocess.InProcessGrid` is for tests, but each
message goes to the node that holds its dataset, as a typed ``FederatedTask``
(:mod:`sandbox.federated_task`), with the job's signed instruction for that dataset. The
messages of one exchange are sent in parallel. A node that refuses, fails or does not answer
within the timeout becomes an error reply, so :class:`federation.server_app.JobServer` records
the failure exactly as in simulation. A reply holding anything but weights, numeric metrics
and the node's name is discarded as an error (:func:`sandbox.federated_task.check_reply`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped,unused-ignore]
from flwr.app import Error, Message
from flwr.common.constant import ErrorCode
from flwr.supercore.run import Run

from federation.inprocess import InProcessGrid
from policies.instructions import SignedInstruction
from sandbox.errors import TaskFormatError
from sandbox.federated_task import check_reply, content_from_task, task_from_content
from sandbox.hub.nodes import NodeClient, signed_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb

#: Flower node id of the first remote node (the others follow, in the job's dataset order).
FIRST_NODE_ID = 1


@dataclass(frozen=True)
class RemoteNode:
    """One dataset's node: its name, gRPC address and the job's signed instruction for it."""

    dataset: str
    name: str
    address: str
    instruction: SignedInstruction


class RemoteGrid(InProcessGrid):
    """Delivers each message to its node's ``RunTask`` and collects the replies (the
    in-process grid's bookkeeping, with a remote delivery sent in parallel).

    ``client`` is the hub's :class:`~sandbox.hub.nodes.NodeClient` (its mTLS channels, one per
    node, shared with queries); each task waits at most ``timeout_s`` for its node.
    """

    def __init__(self, nodes: Iterable[RemoteNode], client: NodeClient, timeout_s: float) -> None:
        self.nodes = {FIRST_NODE_ID + i: node for i, node in enumerate(nodes)}
        self.client = client
        self.timeout_s = timeout_s
        self._run = Run.create_empty(1)
        self.replies: dict[str, Message] = {}

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch = []
        for message in messages:
            message_id = str(uuid.uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            batch.append((message_id, message))
        with futures.ThreadPoolExecutor(max_workers=max(1, len(batch))) as pool:
            replies = list(pool.map(lambda item: self.deliver(item[1]), batch))
        for (message_id, _), reply in zip(batch, replies, strict=True):
            if reply is not None:
                self.replies[message_id] = reply
        return [message_id for message_id, _ in batch]

    # -- delivery ---------------------------------------------------------------------------

    def deliver(self, message: Message) -> Message | None:
        """The node's reply to ``message`` (an error reply if it refused or failed)."""
        node = self.nodes.get(message.metadata.dst_node_id)
        if node is None:
            return None
        try:
            task = task_from_content(
                message.content, message.metadata.message_type, message.metadata.group_id
            )
            request = pb.RunTaskRequest(instruction=signed_pb(node.instruction), task=task)
            reply = self.client.run_task(node.address, request, self.timeout_s)
            check_reply(reply.reply, node.name)
            if reply.reply.error:
                return _error(message, f"node {node.name}: {reply.reply.error}")
            answer = Message(content_from_task(reply.reply), reply_to=message)
            answer.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            return answer
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else ""
            return _error(message, f"node {node.name} answered {code}: {details}")
        except TaskFormatError as exc:
            return _error(message, str(exc))

    def close(self) -> None:
        """Nothing to release: the channels belong to the hub's node client."""


def _error(message: Message, reason: str) -> Message:
    reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason), reply_to=message)
    reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
    return reply
