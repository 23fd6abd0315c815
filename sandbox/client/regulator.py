"""``RegulatorClient``: a regulator's (监管方) typed client of the hub's ``RegulatorService``.

Signed tree heads, inclusion and consistency proofs (RFC 9162) and the log entries. Every answer
is checked offline with :mod:`policies.treehead` and :mod:`policies.merkle`; the helpers
:func:`check_inclusion` and :func:`check_consistency` do so and raise ``VerificationFailed``.
The hub's heads come with the department nodes' witness cosignatures
(:meth:`RegulatorClient.witnessed_head`), and :meth:`RegulatorClient.export` writes them into
the export, where ``policies.verify.verify_export(..., witness_keys=, min_witnesses=)`` counts
them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import ProofError, TreeHeadError, WitnessError
from policies.merkle import leaf_hash, verify_consistency, verify_inclusion
from policies.treehead import SignedTreeHead, verify_tree_head
from policies.verify import EXPORT_FORMAT
from policies.witness import Cosignature, count_witnesses
from sandbox.client.profile import DEFAULT_TIMEOUT_S, Connection, Profile
from sandbox.errors import VerificationFailed
from sandbox.node.witness import cosignature_from_pb
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc


def _head(message: pb.SignedTreeHead) -> SignedTreeHead:
    m = message
    return SignedTreeHead(m.size, bytes(m.root), m.timestamp_ms, m.key_id, bytes(m.signature))


@dataclass(frozen=True)
class WitnessedHead:
    """A signed tree head with the witnesses' cosignatures the hub collected for it (not yet
    verified: :meth:`witnesses` checks them against the witness keys you trust)."""

    tree_head: SignedTreeHead
    cosignatures: tuple[Cosignature, ...] = ()

    def witnesses(self, witness_keys: Mapping[str, Ed25519PublicKey]) -> list[str]:
        """The trusted witnesses whose cosignature of this head verifies."""
        good, _ = count_witnesses(self.tree_head, self.cosignatures, witness_keys)
        return good


@dataclass(frozen=True)
class InclusionProof:
    """Entry ``index`` in the tree of ``tree_size``: its audit path, its canonical bytes and
    the signed head of that size (``None`` if the hub never signed one of that size)."""

    index: int
    tree_size: int
    audit_path: tuple[bytes, ...] = field(repr=False)
    entry: bytes = field(repr=False)
    tree_head: SignedTreeHead | None = field(repr=False)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.entry)
        return out


@dataclass(frozen=True)
class ConsistencyProof:
    """That the tree of ``first`` entries is a prefix of the tree of ``second``."""

    first: int
    second: int
    proof: tuple[bytes, ...] = field(repr=False)
    tree_head: SignedTreeHead | None = field(repr=False)


@dataclass(frozen=True)
class LogEntry:
    index: int
    entry: bytes = field(repr=False)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.entry)
        return out


@dataclass(frozen=True)
class EntriesPage:
    """Entries ``[start, next)``; ``next == tree_size`` at the end of the log."""

    entries: tuple[LogEntry, ...]
    next: int
    tree_size: int


def _verified_head(head: SignedTreeHead | None, key: Ed25519PublicKey) -> SignedTreeHead:
    if head is None:
        raise VerificationFailed("the hub sent no signed head for this size", "VERIFY")
    try:
        verify_tree_head(head, key)
    except TreeHeadError as exc:
        raise VerificationFailed(str(exc), "VERIFY") from None
    return head


def check_inclusion(proof: InclusionProof, authority_public_key: Ed25519PublicKey) -> None:
    """Raise ``VerificationFailed`` unless the head is signed and the entry is under its root."""
    head = _verified_head(proof.tree_head, authority_public_key)
    try:
        verify_inclusion(
            proof.index, head.size, leaf_hash(proof.entry), proof.audit_path, head.root
        )
    except ProofError as exc:
        raise VerificationFailed(str(exc), "VERIFY") from None


def check_consistency(
    older: SignedTreeHead, proof: ConsistencyProof, authority_public_key: Ed25519PublicKey
) -> SignedTreeHead:
    """Check that ``proof``'s signed head extends ``older`` (also checked); return the newer."""
    _verified_head(older, authority_public_key)
    newer = _verified_head(proof.tree_head, authority_public_key)
    if proof.first != older.size or proof.second != newer.size:
        raise VerificationFailed(
            f"the proof is from {proof.first} to {proof.second} entries, the heads have "
            f"{older.size} and {newer.size}",
            "VERIFY",
        )
    try:
        verify_consistency(older.size, newer.size, older.root, newer.root, proof.proof)
    except ProofError as exc:
        raise VerificationFailed(f"{exc}; the log was rewritten or forked", "VERIFY") from None
    return newer


class RegulatorClient:
    """A regulator's connection to the hub (certificate or API key of role ``regulator``)."""

    def __init__(self, profile: Profile | None = None, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.connection = Connection(profile or Profile.load(), timeout)
        self._stub = pb_grpc.RegulatorServiceStub(self.connection.channel)

    def __enter__(self) -> RegulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def tree_head(self) -> SignedTreeHead:
        """A freshly signed head of the whole log (:meth:`witnessed_head` adds the
        cosignatures)."""
        return self.witnessed_head().tree_head

    def witnessed_head(self) -> WitnessedHead:
        """A freshly signed head of the whole log with the cosignatures of the department
        nodes that witnessed it (a malformed cosignature is ``VerificationFailed``)."""
        reply = self.connection.call(self._stub.SignedTreeHead, pb.SignedTreeHeadRequest())
        try:
            cosignatures = tuple(cosignature_from_pb(c) for c in reply.cosignatures)
        except WitnessError as exc:
            raise VerificationFailed(str(exc), "VERIFY") from None
        return WitnessedHead(_head(reply.tree_head), cosignatures)

    def inclusion_proof(self, index: int, size: int = 0) -> InclusionProof:
        """Entry ``index`` with its audit path in the tree of ``size`` (0: the current tree)."""
        request = pb.InclusionProofRequest(index=index, tree_size=size)
        r = self.connection.call(self._stub.InclusionProof, request)
        head = _head(r.tree_head) if r.HasField("tree_head") else None
        path = tuple(bytes(p) for p in r.audit_path)
        return InclusionProof(r.index, r.tree_size, path, bytes(r.entry), head)

    def consistency_proof(self, first: int, second: int = 0) -> ConsistencyProof:
        """The proof that the tree of ``first`` is a prefix of the tree of ``second``."""
        request = pb.ConsistencyProofRequest(first=first, second=second)
        r = self.connection.call(self._stub.ConsistencyProof, request)
        head = _head(r.tree_head) if r.HasField("tree_head") else None
        return ConsistencyProof(r.first, r.second, tuple(bytes(p) for p in r.proof), head)

    def entries(self, start: int = 0, end: int = 0) -> EntriesPage:
        """Entries ``[start, end)`` (``end`` 0: to the end), at most one page (1000)."""
        r = self.connection.call(self._stub.Entries, pb.EntriesRequest(start=start, end=end))
        page = tuple(LogEntry(e.index, bytes(e.entry)) for e in r.entries)
        return EntriesPage(page, r.next, r.tree_size)

    def export(self, out: Path | str, authority_public_key: Ed25519PublicKey) -> SignedTreeHead:
        """Write the whole log, as of a freshly signed head, in the export format that
        ``sandbox audit verify`` checks offline, followed by the witnesses' cosignatures of
        that head; the head's signature is checked first and every page's entries before they
        are written. Returns the head."""
        witnessed = self.witnessed_head()
        head = _verified_head(witnessed.tree_head, authority_public_key)
        path = Path(out)
        tmp = path.with_name(f"{path.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(_line({"format": EXPORT_FORMAT, "size": head.size}))
            start = 0
            while start < head.size:
                page = self.entries(start, head.size)
                if not page.entries or page.entries[0].index != start:
                    raise VerificationFailed(
                        f"the hub sent no entry {start} of {head.size}; try again", "VERIFY"
                    )
                for entry in page.entries:
                    f.write(entry.entry + b"\n")
                start = page.entries[-1].index + 1
            f.write(_line({"tree_head": head.to_json()}))
            for cos in witnessed.cosignatures:
                if cos.covers(head):
                    f.write(_line({"cosignature": cos.to_json()}))
        tmp.replace(path)
        return head


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"


__all__ = [
    "ConsistencyProof",
    "EntriesPage",
    "InclusionProof",
    "LogEntry",
    "RegulatorClient",
    "WitnessedHead",
    "check_consistency",
    "check_inclusion",
]
