"""Offline verifier of an exported transparency log. Needs only the file and a public key.

Export layout, one item per line (``\\n``-terminated)::

    {"format":"gov-data-sandbox-transparency-log/1","size":N}
    <entry 0: canonical JSON, its leaf hash is SHA-256(0x00 || line)>
    ...
    <entry N-1>
    {"tree_head":{...signed tree head...}}

The verifier hashes every entry, checks that entry ``i`` says ``"index": i``, rebuilds the
RFC 9162 root, checks the Ed25519 signature of the tree head over that root and size, and,
given a tree head the regulator kept from earlier, checks that it is signed too and that its
root is the root of the first entries of this export (so the log was only appended to).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.errors import TreeHeadError
from policies.errors import VerificationError as VerificationError  # re-exported: raised here
from policies.merkle import TreeBuilder, leaf_hash
from policies.treehead import SignedTreeHead, verify_tree_head

EXPORT_FORMAT = "gov-data-sandbox-transparency-log/1"


@dataclass(frozen=True)
class VerifiedLog:
    size: int
    root: bytes
    tree_head: SignedTreeHead
    previous: SignedTreeHead | None


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def verify_export(
    path: Path, public_key: Ed25519PublicKey, previous: SignedTreeHead | None = None
) -> VerifiedLog:
    """Verify an export; raise ``VerificationError`` naming the first problem found."""
    try:
        return _verify(path, public_key, previous)
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
        if header_line != _canonical({"format": EXPORT_FORMAT, "size": size}):
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
        if f.read(1):
            raise VerificationError(f"data follows the tree head after entry {size - 1}")
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
                f"{size}: the log was truncated"
            )
        if previous_root != previous.root:
            raise VerificationError(
                f"the earlier tree head (size {previous.size}) is not a prefix of this log: "
                "entries it covered were rewritten"
            )
    return VerifiedLog(size, root, sth, previous)
