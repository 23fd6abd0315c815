"""``FirmClient.result``: a stored release fetched again by its id (``GetResult``), a query's
answer or a trained model, with its log proof. A query's answer is checked like a fresh one
(:func:`sandbox.client.firm.verify_answer`); a model's proof is checked against the signed head
and the logged digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import ProofError, TreeHeadError
from policies.merkle import leaf_hash, verify_inclusion
from policies.treehead import SignedTreeHead, verify_tree_head
from sandbox.client.firm import QueryAnswer, verify_answer
from sandbox.client.jobs import TrainedModel
from sandbox.errors import VerificationFailed
from sandbox.protocol.v1 import sandbox_pb2 as pb


@dataclass(frozen=True)
class StoredResult:
    """``kind`` is ``query`` (``answer`` set) or ``training`` (``model`` set)."""

    result_id: str
    grant_id: str
    kind: str
    answer: QueryAnswer | None
    model: TrainedModel | None
    release_digest: str
    log: pb.LogProof

    @classmethod
    def from_pb(cls, m: pb.GetResultResponse) -> StoredResult:
        kind = m.WhichOneof("result") or "none"
        answer = model = None
        if kind == "query":
            reply = pb.SubmitQueryResponse(
                result_id=m.result_id,
                grant_id=m.grant_id,
                result=m.query,
                release_digest=m.release_digest,
                log=m.log,
            )
            answer = QueryAnswer.from_pb(reply)
        elif kind == "training":
            model = TrainedModel.from_pb(m.training)
        return cls(m.result_id, m.grant_id, kind, answer, model, m.release_digest, m.log)


def verify_result(result: StoredResult, authority_public_key: Ed25519PublicKey) -> dict[str, Any]:
    """Check ``result`` offline and return its log entry; raise ``VerificationFailed``."""
    if result.answer is not None:
        return verify_answer(result.answer, authority_public_key)
    log, h = result.log, result.log.tree_head
    head = SignedTreeHead(h.size, bytes(h.root), h.timestamp_ms, h.key_id, bytes(h.signature))
    entry = bytes(log.entry)
    try:
        verify_tree_head(head, authority_public_key)
        if not entry:
            raise VerificationFailed("the hub sent no log entry for this result", "VERIFY")
        path = tuple(bytes(p) for p in log.inclusion_proof)
        verify_inclusion(log.index, head.size, leaf_hash(entry), path, head.root)
    except (TreeHeadError, ProofError) as exc:
        raise VerificationFailed(f"{exc}; do not trust this result", "VERIFY") from None
    try:
        body: dict[str, Any] = json.loads(entry)
    except ValueError:
        raise VerificationFailed("the log entry is not JSON", "VERIFY") from None
    if body.get("release_sha256") != result.release_digest:
        raise VerificationFailed(
            "the logged digest is not this result's; do not trust this result", "VERIFY"
        )
    # The release of a training job is the model file itself: its SHA-256 is logged.
    model = result.model
    if model is not None and hashlib.sha256(model.weights).hexdigest() != body.get(
        "release_sha256"
    ):
        raise VerificationFailed(
            "the model file's SHA-256 is not the logged release digest; do not use this model",
            "VERIFY",
        )
    return body


__all__ = ["StoredResult", "verify_result"]
