"""``RegulatorService``: the transparency log for regulators (监管方), served by the hub.

Signed tree heads, inclusion and consistency proofs (RFC 9162, :mod:`policies.merkle`) and the
entries themselves, read from the :class:`policies.Authority`'s log. Only a caller with the
``regulator`` role may call it. A regulator verifies every answer offline with the authority's
public key: :func:`policies.treehead.verify_tree_head`, :func:`policies.merkle.verify_inclusion`
(the leaf hash is :func:`policies.merkle.leaf_hash` of the entry bytes) and
:func:`policies.merkle.verify_consistency`.

``SignedTreeHead`` signs a fresh head and asks the department nodes to witness it
(:mod:`sandbox.hub.witnesses`); the answer carries the cosignatures that came back.
"""

from __future__ import annotations

from typing import Any

from policies.authority import Authority
from policies.errors import InvalidRequestError
from policies.treehead import SignedTreeHead
from sandbox.credentials import Principal
from sandbox.hub.auth import Authenticator
from sandbox.hub.witnesses import HubWitnesses
from sandbox.node.witness import cosignature_pb, tree_head_from_pb, tree_head_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

#: The most entries one ``Entries`` call returns; page on with ``next``.
MAX_PAGE = 1000

__all__ = ["RegulatorService", "tree_head_from_pb", "tree_head_pb"]


class RegulatorService(pb_grpc.RegulatorServiceServicer):
    """The log as a regulator reads it; every method needs the ``regulator`` role."""

    def __init__(
        self, authority: Authority, auth: Authenticator, witnesses: HubWitnesses | None = None
    ) -> None:
        self.authority = authority
        self.auth = auth
        #: Asks the nodes to cosign each head served; ``None``: heads go out uncosigned.
        self.witnesses = witnesses

    def _head_of(self, size: int) -> SignedTreeHead | None:
        """A signed head of exactly ``size`` entries: a fresh one for the current size, else
        the newest stored one of that size (``None`` if none was ever signed)."""
        head = self.authority.tree_head()
        if head.size == size:
            return head
        return self.authority.log.stored_head(size)

    def SignedTreeHead(  # gRPC's method name
        self, request: pb.SignedTreeHeadRequest, context: Any
    ) -> pb.SignedTreeHeadResponse:
        def handle(who: Principal) -> pb.SignedTreeHeadResponse:
            head = self.authority.tree_head()
            cosignatures = [] if self.witnesses is None else self.witnesses.collect(head)
            return pb.SignedTreeHeadResponse(
                tree_head=tree_head_pb(head),
                cosignatures=[cosignature_pb(c) for c in cosignatures],
            )

        return self.auth.serve("SignedTreeHead", context, ("regulator",), handle)

    def InclusionProof(  # gRPC's method name
        self, request: pb.InclusionProofRequest, context: Any
    ) -> pb.InclusionProofResponse:
        def handle(who: Principal) -> pb.InclusionProofResponse:
            current = self.authority.tree_head()
            size = request.tree_size or current.size
            if size > current.size or request.index >= size:
                raise InvalidRequestError(
                    f"entry {request.index} is not in a tree of {size} entries (the log holds "
                    f"{current.size}); ask for an index below the tree size"
                )
            head = current if size == current.size else self._head_of(size)
            reply = pb.InclusionProofResponse(
                index=request.index,
                tree_size=size,
                audit_path=self.authority.inclusion_proof(request.index, size),
                entry=self.authority.log.entry(request.index),
            )
            if head is not None:
                reply.tree_head.CopyFrom(tree_head_pb(head))
            return reply

        return self.auth.serve("InclusionProof", context, ("regulator",), handle)

    def ConsistencyProof(  # gRPC's method name
        self, request: pb.ConsistencyProofRequest, context: Any
    ) -> pb.ConsistencyProofResponse:
        def handle(who: Principal) -> pb.ConsistencyProofResponse:
            current = self.authority.tree_head()
            second = request.second or current.size
            if not request.first <= second <= current.size:
                raise InvalidRequestError(
                    f"a consistency proof needs first <= second <= {current.size} (the log's "
                    f"size), got {request.first} and {second}"
                )
            head = current if second == current.size else self._head_of(second)
            reply = pb.ConsistencyProofResponse(
                first=request.first,
                second=second,
                proof=self.authority.consistency_proof(request.first, second),
            )
            if head is not None:
                reply.tree_head.CopyFrom(tree_head_pb(head))
            return reply

        return self.auth.serve("ConsistencyProof", context, ("regulator",), handle)

    def Entries(self, request: pb.EntriesRequest, context: Any) -> pb.EntriesResponse:  # gRPC name
        def handle(who: Principal) -> pb.EntriesResponse:
            size = self.authority.log.size
            end = min(request.end or size, size, request.start + MAX_PAGE)
            if request.start > size or (request.end and request.end < request.start):
                raise InvalidRequestError(
                    f"entries {request.start}..{request.end} are outside the log (size {size})"
                )
            entries = [
                pb.LogEntry(index=request.start + i, entry=data)
                for i, data in enumerate(self.authority.log.entries(request.start, end))
            ]
            return pb.EntriesResponse(entries=entries, next=end, tree_size=size)

        return self.auth.serve("Entries", context, ("regulator",), handle)
