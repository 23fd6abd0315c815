"""Offline verifier of an exported transparency log. Needs only the file and a public key.

Export layout, one item per line (``\\n``-terminated)::

    {"format":"gov-data-sandbox-transparency-log/2","size":N}
    <entry 0: canonical JSON, its leaf hash is SHA-256(0x00 || line)>
    ...
    <entry N-1>
    {"tree_head":{...signed tree head...}}
    {"cosignature":{...a witness's cosignature of that head...}}     (zero or more)

Format ``/1`` is the same without cosignature lines.

The verifier hashes every entry, checks that entry ``i`` says ``"index": i``, rebuilds the
RFC 9162 root, checks the Ed25519 signature of the tree head over that root and size, and,
given a tree head the regulator kept from earlier, checks that it is signed too and that its
root is the root of the first entries of this export (so the log was only appended to).
Given the witnesses it trusts (name -> public key) and ``min_witnesses``, it also requires that
many of them to have cosigned the export's tree head (``policies.witness``).

A *proof file* (``PROOF_FORMAT``, written by ``sandbox audit prove`` / ``inclusion``) holds an
RFC 9162 consistency proof between two signed heads, or an inclusion proof of one entry's
exact bytes under a signed head; :func:`verify_proof` checks it offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import ProofError, TreeHeadError, WitnessError
from policies.errors import VerificationError as VerificationError  # re-exported: raised here
from policies.merkle import TreeBuilder, leaf_hash, verify_consistency, verify_inclusion
from policies.treehead import SignedTreeHead, verify_tree_head
from policies.witness import Cosignature, count_witnesses

EXPORT_FORMAT = "gov-data-sandbox-transparency-log/2"
#: Formats this verifier reads (``/1`` has no cosignature lines).
EXPORT_FORMATS = ("gov-data-sandbox-transparency-log/1", EXPORT_FORMAT)


@dataclass(frozen=True)
class VerifiedLog:
    size: int
    root: bytes
    tree_head: SignedTreeHead
    previous: SignedTreeHead | None
    #: Every cosignature line of the export, verified or not.
    cosignatures: tuple[Cosignature, ...] = ()
    #: The trusted witnesses whose cosignature of the tree head verified.
    witnesses: tuple[str, ...] = field(default=())


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def verify_export(
    path: Path,
    public_key: Ed25519PublicKey,
    previous: SignedTreeHead | None = None,
    *,
    witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    min_witnesses: int = 0,
) -> VerifiedLog:
    """Verify an export; raise ``VerificationError`` naming the first problem found."""
    try:
        result = _verify(path, public_key, previous)
        return _check_witnesses(result, witness_keys or {}, min_witnesses)
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except RecursionError:
        raise VerificationError("a line of the export is nested too deeply") from None


def _verify(
    path: Path, public_key: Ed25519PublicKey, previous: SignedTreeHead | None
) -> VerifiedLog:
    if previous is not None:
        try:
            verify_tree_head(previous, public_key)
        except TreeHeadError as exc:
            raise VerificationError(f"the earlier tree head: {exc}") from None
    builder = TreeBuilder()
    previous_root = None
    previous_size = -1 if previous is None else previous.size
    with open(path, "rb") as f:
        header_line = f.readline()
        try:
            header = json.loads(header_line)
            size = header["size"]
        except (ValueError, TypeError, KeyError):
            raise VerificationError("line 1 is not an export header") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise VerificationError(f"line 1 gives an invalid size {size!r}")
        version = header.get("format") if isinstance(header, dict) else None
        if version not in EXPORT_FORMATS or header_line != _canonical(
            {"format": version, "size": size}
        ):
            raise VerificationError(f"line 1 is not a {EXPORT_FORMAT} header")
        for i in range(size):
            line = f.readline()
            if not line.endswith(b"\n"):
                raise VerificationError(f"the file ends after {i} of {size} entries")
            data = line[:-1]
            try:
                body = json.loads(data)
            except ValueError:
                raise VerificationError(f"entry {i} (line {i + 2}) is not JSON") from None
            if not isinstance(body, dict) or "index" not in body:
                if isinstance(body, dict) and "tree_head" in body:
                    raise VerificationError(
                        f"the file holds {i} entries, its header says {size}: entries were deleted"
                    )
                raise VerificationError(f"entry {i} (line {i + 2}) is not a log entry")
            index = body["index"]
            if index != i:
                raise VerificationError(
                    f"line {i + 2} holds entry {index!r} where entry {i} belongs: entries "
                    "were deleted, inserted or reordered"
                )
            if i == previous_size:
                previous_root = builder.root()
            builder.append(leaf_hash(data))
        if size == previous_size:
            previous_root = builder.root()
        trailer_line = f.readline()
        cosignatures = _cosignatures(f.readlines(), size + 3, version == EXPORT_FORMAT)
    try:
        sth = SignedTreeHead.from_json(json.loads(trailer_line)["tree_head"])
    except (ValueError, TypeError, KeyError):
        raise VerificationError(f"line {size + 2} is not a tree head") from None
    if trailer_line != _canonical({"tree_head": sth.to_json()}):
        raise VerificationError(f"line {size + 2} is not a canonical tree head")
    try:
        verify_tree_head(sth, public_key)
    except TreeHeadError as exc:
        raise VerificationError(str(exc)) from None
    if sth.size != size:
        raise VerificationError(f"the tree head signs {sth.size} entries, the file has {size}")
    root = builder.root()
    if root != sth.root:
        raise VerificationError(
            "the entries do not hash to the signed root: an entry was changed, removed or inserted"
        )
    if previous is not None:
        if previous.size > size:
            raise VerificationError(
                f"the earlier tree head covers {previous.size} entries, this export only "
                f"{size}: the log was truncated or rolled back to an older head"
            )
        if previous_root != previous.root:
            raise VerificationError(
                f"the earlier tree head (size {previous.size}) is not a prefix of this log: "
                "entries it covered were rewritten"
            )
    return VerifiedLog(size, root, sth, previous, cosignatures)


def _cosignatures(lines: list[bytes], first_line: int, allowed: bool) -> tuple[Cosignature, ...]:
    out = []
    for n, line in enumerate(lines, first_line):
        try:
            body = json.loads(line)
            cos = Cosignature.from_json(body["cosignature"])
        except (ValueError, TypeError, KeyError, WitnessError):
            raise VerificationError(f"line {n} after the tree head is not a cosignature") from None
        if not allowed:
            raise VerificationError("data follows the tree head of a format /1 export")
        if line != _canonical({"cosignature": cos.to_json()}):
            raise VerificationError(f"line {n} is not a canonical cosignature")
        out.append(cos)
    return tuple(out)


def _check_witnesses(
    result: VerifiedLog, keys: Mapping[str, Ed25519PublicKey], minimum: int
) -> VerifiedLog:
    good, bad = count_witnesses(result.tree_head, result.cosignatures, keys)
    if len(good) < minimum:
        known = ", ".join(sorted(keys)) or "none given"
        why = f"; {bad[0]}" if bad else ""
        raise VerificationError(
            f"{len(good)} of the witnesses you trust ({known}) cosigned this tree head, "
            f"{minimum} required{why}: the log may be a split view shown only to you"
        )
    return VerifiedLog(
        result.size,
        result.root,
        result.tree_head,
        result.previous,
        result.cosignatures,
        tuple(good),
    )


# -- proof files ------------------------------------------------------------------------------

PROOF_FORMAT = "gov-data-sandbox-proof/1"
#: Proof files larger than this are not proof files (a proof is O(log n) hashes + one entry).
MAX_PROOF_BYTES = 1 << 20


@dataclass(frozen=True)
class VerifiedProof:
    """A proof file that verified: its kind and the signed heads it relates."""

    kind: str
    heads: tuple[SignedTreeHead, ...]
    index: int | None = None
    entry: dict[str, object] | None = None


def consistency_proof_json(
    first: SignedTreeHead, second: SignedTreeHead, proof: Sequence[bytes]
) -> dict[str, object]:
    """An RFC 9162 consistency proof between two signed heads, as a proof file's JSON."""
    return {
        "format": PROOF_FORMAT,
        "proof": "consistency",
        "first": first.to_json(),
        "second": second.to_json(),
        "hashes": [h.hex() for h in proof],
    }


def inclusion_proof_json(
    index: int, entry: bytes, head: SignedTreeHead, path: Sequence[bytes]
) -> dict[str, object]:
    """An RFC 9162 inclusion proof of one entry (its exact bytes) under a signed head."""
    return {
        "format": PROOF_FORMAT,
        "proof": "inclusion",
        "index": index,
        "entry": entry.decode(),
        "tree_head": head.to_json(),
        "hashes": [h.hex() for h in path],
    }


def read_proof_file(path: Path) -> dict[str, object] | None:
    """The JSON of a proof file, or ``None`` if ``path`` is not one (e.g. an export)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROOF_BYTES + 1)
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PROOF_BYTES:
        return None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(body, dict) and body.get("format") == PROOF_FORMAT:
        return body
    return None


def _head_of(body: Mapping[str, object], name: str, key: Ed25519PublicKey) -> SignedTreeHead:
    try:
        head = SignedTreeHead.from_json(body[name])
        verify_tree_head(head, key)
    except KeyError:
        raise VerificationError(f"the proof file has no {name!r} tree head") from None
    except TreeHeadError as exc:
        raise VerificationError(f"the proof's {name!r} head: {exc}") from None
    return head


def _hashes(body: Mapping[str, object]) -> list[bytes]:
    hashes = body.get("hashes")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise VerificationError("the proof file's 'hashes' is not a list of hex strings")
    try:
        return [bytes.fromhex(str(h)) for h in hashes]
    except ValueError:
        raise VerificationError("the proof file's 'hashes' is not a list of hex strings") from None


def verify_proof(body: Mapping[str, object], public_key: Ed25519PublicKey) -> VerifiedProof:
    """Check a proof file offline: the heads' signatures and the RFC 9162 proof between them
    (consistency) or from the entry's bytes to the head's root (inclusion)."""
    kind = body.get("proof")
    try:
        if kind == "consistency":
            first = _head_of(body, "first", public_key)
            second = _head_of(body, "second", public_key)
            verify_consistency(first.size, second.size, first.root, second.root, _hashes(body))
            return VerifiedProof("consistency", (first, second))
        if kind == "inclusion":
            head = _head_of(body, "tree_head", public_key)
            index, entry = body.get("index"), body.get("entry")
            if not isinstance(index, int) or isinstance(index, bool):
                raise VerificationError("the proof file's 'index' is not an integer")
            if not isinstance(entry, str):
                raise VerificationError("the proof file's 'entry' is not the entry's text")
            parsed = json.loads(entry)
            if not isinstance(parsed, dict) or parsed.get("index") != index:
                raise VerificationError(f"the entry in the proof file is not entry {index}")
            verify_inclusion(index, head.size, leaf_hash(entry.encode()), _hashes(body), head.root)
            return VerifiedProof("inclusion", (head,), index, parsed)
    except ProofError as exc:
        raise VerificationError(f"the proof does not hold: {exc}") from None
    except (ValueError, RecursionError):
        raise VerificationError("the proof file's entry is not JSON") from None
    raise VerificationError(f"unknown proof kind {kind!r}; expected consistency or inclusion")
