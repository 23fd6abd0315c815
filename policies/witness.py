"""Witness cosignatures: independent parties vouch that they saw one, append-only log.

A signed tree head proves what the authority signed, not that everybody was shown the same
log: an authority could show one regulator a log and another a rewritten one (a *split
view*). A **witness** (each department node is one) keeps the last tree head it cosigned and
cosigns a new head only after checking

1. the authority's signature on the new head,
2. that the new head is at least as large as the last one it cosigned, and
3. an RFC 9162 consistency proof from its last head to the new one (the new log extends the
   old one: nothing it vouched for was rewritten).

Its cosignature is an Ed25519 signature, with the witness's own key, over a plain text an
auditor can rebuild by hand::

    gov-data-sandbox witness cosignature v1
    <authority key id>
    <tree size in decimal>
    <root hash in lowercase hex>
    <the tree head's timestamp in milliseconds>
    <witness name>
    <cosignature time in milliseconds>

A verifier that requires ``k`` of its known witnesses to have cosigned the head it checks can
only be shown a forked log if ``k`` witnesses were shown the same fork.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from policies.treehead import sign_tree_head
>>> authority, node = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
>>> head = sign_tree_head(authority, 0, bytes.fromhex(EMPTY_ROOT_HEX), 1)
>>> cos = cosign(node, "jinan-node", head, 2)
>>> verify_cosignature(cos, head, node.public_key())
>>> Cosignature.from_json(cos.to_json()) == cos
True
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.errors import ProofError, TreeHeadError, WitnessError
from policies.keys import key_id
from policies.merkle import verify_consistency
from policies.treehead import SignedTreeHead, verify_tree_head

HEADER = "gov-data-sandbox witness cosignature v1"
#: The root of the empty tree: SHA-256 of nothing.
EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_MAX_NAME = 200


@dataclass(frozen=True)
class Cosignature:
    """One witness's signature over one signed tree head."""

    witness: str
    witness_key_id: str
    authority_key_id: str
    size: int
    root: bytes
    head_timestamp_ms: int
    timestamp_ms: int
    signature: bytes

    def message(self) -> bytes:
        return cosignature_message(
            self.authority_key_id,
            self.size,
            self.root,
            self.head_timestamp_ms,
            self.witness,
            self.timestamp_ms,
        )

    def covers(self, head: SignedTreeHead) -> bool:
        """Whether this cosignature is over exactly ``head`` (same key, size, root, time)."""
        return (
            self.authority_key_id == head.key_id
            and self.size == head.size
            and self.root == head.root
            and self.head_timestamp_ms == head.timestamp_ms
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "witness": self.witness,
            "witness_key_id": self.witness_key_id,
            "authority_key_id": self.authority_key_id,
            "size": self.size,
            "root": self.root.hex(),
            "head_timestamp_ms": self.head_timestamp_ms,
            "timestamp_ms": self.timestamp_ms,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Cosignature:
        try:
            cos = cls(
                witness=_name(data["witness"]),
                witness_key_id=str(data["witness_key_id"]),
                authority_key_id=str(data["authority_key_id"]),
                size=_int(data["size"]),
                root=bytes.fromhex(data["root"]),
                head_timestamp_ms=_int(data["head_timestamp_ms"]),
                timestamp_ms=_int(data["timestamp_ms"]),
                signature=bytes.fromhex(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WitnessError(f"malformed cosignature ({exc}): {data!r:.200}") from None
        if len(cos.root) != 32 or len(cos.signature) != 64:
            raise WitnessError(f"malformed cosignature from {cos.witness!r}: bad root or signature")
        return cos


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME or "\n" in value:
        raise ValueError(f"{value!r} is not a witness name")
    return value


def cosignature_message(
    authority_key_id: str,
    size: int,
    root: bytes,
    head_timestamp_ms: int,
    witness: str,
    timestamp_ms: int,
) -> bytes:
    return (
        f"{HEADER}\n{authority_key_id}\n{size}\n{root.hex()}\n{head_timestamp_ms}\n"
        f"{witness}\n{timestamp_ms}\n"
    ).encode()


def cosign(
    key: Ed25519PrivateKey, witness: str, head: SignedTreeHead, timestamp_ms: int
) -> Cosignature:
    """Cosign ``head`` as ``witness`` (no checks: :class:`Witness` checks before it cosigns)."""
    _name(witness)
    message = cosignature_message(
        head.key_id, head.size, head.root, head.timestamp_ms, witness, timestamp_ms
    )
    return Cosignature(
        witness,
        key_id(key.public_key()),
        head.key_id,
        head.size,
        head.root,
        head.timestamp_ms,
        timestamp_ms,
        key.sign(message),
    )


def verify_cosignature(
    cos: Cosignature, head: SignedTreeHead, witness_key: Ed25519PublicKey
) -> None:
    """Raise :class:`WitnessError` unless ``cos`` is ``witness_key``'s signature over ``head``."""
    if not cos.covers(head):
        raise WitnessError(
            f"the cosignature of {cos.witness!r} is over another tree head (size {cos.size}), "
            f"not the one of size {head.size}"
        )
    if cos.witness_key_id != key_id(witness_key):
        raise WitnessError(
            f"the cosignature of {cos.witness!r} names key {cos.witness_key_id}, not the "
            f"witness key {key_id(witness_key)} you trust"
        )
    try:
        witness_key.verify(cos.signature, cos.message())
    except InvalidSignature:
        raise WitnessError(f"the cosignature of {cos.witness!r} does not verify") from None


def count_witnesses(
    head: SignedTreeHead,
    cosignatures: Sequence[Cosignature],
    witness_keys: Mapping[str, Ed25519PublicKey],
) -> tuple[list[str], list[str]]:
    """The trusted witnesses whose valid cosignature covers ``head``, and one line per
    cosignature that failed (unknown witnesses are ignored: anyone can sign)."""
    good: list[str] = []
    bad: list[str] = []
    for cos in cosignatures:
        key = witness_keys.get(cos.witness)
        if key is None or cos.witness in good:
            continue
        try:
            verify_cosignature(cos, head, key)
        except WitnessError as exc:
            bad.append(str(exc))
        else:
            good.append(cos.witness)
    return good, bad


class Witness:
    """A witness's memory (one SQLite file): the last head it cosigned for each authority key.

    :meth:`witness` checks a new head against it and cosigns only a consistent extension.
    """

    def __init__(self, path: Path | str, name: str, key: Ed25519PrivateKey) -> None:
        self.path = Path(path)
        self.name = _name(name)
        self._key = key
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS witnessed (authority_key_id TEXT PRIMARY KEY, "
            "head TEXT NOT NULL, cosignature TEXT NOT NULL)"
        )

    def close(self) -> None:
        self._db.close()

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def last(self, authority_key_id: str) -> tuple[SignedTreeHead, Cosignature] | None:
        """The last head this witness cosigned for that authority key, with its cosignature."""
        row = self._db.execute(
            "SELECT head, cosignature FROM witnessed WHERE authority_key_id = ?",
            (authority_key_id,),
        ).fetchone()
        if row is None:
            return None
        return (
            SignedTreeHead.from_json(json.loads(row[0])),
            Cosignature.from_json(json.loads(row[1])),
        )

    def witness(
        self,
        head: SignedTreeHead,
        consistency: Sequence[bytes],
        authority_key: Ed25519PublicKey,
        now_ms: int,
    ) -> Cosignature:
        """Cosign ``head`` if it is signed by ``authority_key`` and ``consistency`` proves it
        extends the last head cosigned for that key; raise :class:`WitnessError` otherwise."""
        try:
            verify_tree_head(head, authority_key)
        except TreeHeadError as exc:
            raise WitnessError(f"not cosigned: {exc}") from None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            last = self.last(head.key_id)
            if last is not None:
                self._check_extends(last[0], head, consistency)
                if last[0] == head:
                    self._db.execute("COMMIT")
                    return last[1]
            cos = cosign(self._key, self.name, head, now_ms)
            self._db.execute(
                "INSERT OR REPLACE INTO witnessed VALUES (?, ?, ?)",
                (head.key_id, json.dumps(head.to_json()), json.dumps(cos.to_json())),
            )
            self._db.execute("COMMIT")
            return cos
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @staticmethod
    def _check_extends(
        old: SignedTreeHead, new: SignedTreeHead, consistency: Sequence[bytes]
    ) -> None:
        if new.size < old.size:
            raise WitnessError(
                f"not cosigned: the log shrank from {old.size} to {new.size} entries since this "
                "witness last cosigned it (a truncated or rolled-back log)"
            )
        if new.size == old.size:
            if new.root != old.root:
                raise WitnessError(
                    f"not cosigned: two different logs of {new.size} entries were signed (a fork)"
                )
            return
        try:
            verify_consistency(old.size, new.size, old.root, new.root, list(consistency))
        except ProofError as exc:
            raise WitnessError(
                f"not cosigned: the log of {new.size} entries does not extend the one of "
                f"{old.size} this witness cosigned ({exc}): a fork or rewritten entries"
            ) from None
