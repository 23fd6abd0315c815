"""How the hub reaches department nodes: :class:`NodeRoute` (where a dataset lives) and
:class:`NodeClient` (``NodeService`` calls over mTLS with the hub's certificate)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped,unused-ignore]

from policies.instructions import SignedMessage
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

#: How long the hub waits for a node's answer to one instruction.
DEFAULT_NODE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeRoute:
    """Where a dataset lives: the node's name (shown to firms) and its gRPC address."""

    name: str
    address: str


def signed_pb(signed: SignedMessage) -> pb.SignedInstruction:
    """A signed instruction or notice as the ``SignedInstruction`` message."""
    return pb.SignedInstruction(
        instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
    )


class NodeClient:
    """Calls ``NodeService`` on department nodes, one cached channel per address.

    ``credentials`` are the hub's channel credentials (its client certificate and the CA,
    for mTLS with the nodes); ``None`` means plaintext, for a loopback test setup only.
    Each call raises ``grpc.RpcError`` if the node does not answer.
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

    def _stub(self, address: str) -> pb_grpc.NodeServiceStub:
        return pb_grpc.NodeServiceStub(self._channel(address))

    def execute(self, address: str, signed: SignedMessage) -> pb.ExecuteResponse:
        """Send one signed instruction."""
        request = pb.ExecuteRequest(instruction=signed_pb(signed))
        reply: pb.ExecuteResponse = self._stub(address).Execute(request, timeout=self.timeout_s)
        return reply

    def run_task(
        self, address: str, request: pb.RunTaskRequest, timeout_s: float | None = None
    ) -> pb.RunTaskResponse:
        """One federated-training task of a job whose signed plan the node accepted."""
        reply: pb.RunTaskResponse = self._stub(address).RunTask(
            request, timeout=timeout_s or self.timeout_s
        )
        return reply

    def report_metadata(
        self, address: str, timeout_s: float | None = None
    ) -> pb.ReportMetadataResponse:
        """The node's name, public metadata, trusted key, spend and witness state."""
        reply: pb.ReportMetadataResponse = self._stub(address).ReportMetadata(
            pb.ReportMetadataRequest(), timeout=timeout_s or self.timeout_s
        )
        return reply

    def witness(
        self, address: str, request: pb.WitnessRequest, timeout_s: float | None = None
    ) -> pb.WitnessResponse:
        """Ask the node to cosign a tree head (``FAILED_PRECONDITION`` if it refuses)."""
        reply: pb.WitnessResponse = self._stub(address).Witness(
            request, timeout=timeout_s or self.timeout_s
        )
        return reply

    def revoke(self, address: str, signed: SignedMessage) -> pb.NodeRevokeResponse:
        """Deliver one signed revocation notice."""
        request = pb.NodeRevokeRequest(notice=signed_pb(signed))
        reply: pb.NodeRevokeResponse = self._stub(address).Revoke(request, timeout=self.timeout_s)
        return reply

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()
