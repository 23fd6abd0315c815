"""Signed tree heads: (size, root hash, time) signed with the log's Ed25519 key.

The signed message is plain text so an auditor can rebuild it by hand::

    gov-data-sandbox transparency log tree head v1
    <tree size in decimal>
    <root hash in lowercase hex>
    <timestamp in milliseconds since the epoch>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.errors import TreeHeadError as TreeHeadError  # re-exported: raised here
from policies.keys import key_id

HEADER = "gov-data-sandbox transparency log tree head v1"


@dataclass(frozen=True)
class SignedTreeHead:
    size: int
    root: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        return tree_head_message(self.size, self.root, self.timestamp_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "timestamp_ms": self.timestamp_ms,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedTreeHead:
        try:
            sth = cls(
                size=int(data["size"]),
                root=bytes.fromhex(data["root"]),
                timestamp_ms=int(data["timestamp_ms"]),
                key_id=str(data["key_id"]),
                signature=bytes.fromhex(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TreeHeadError(f"malformed tree head ({exc!r}): {data!r:.200}") from exc
        if sth.size < 0 or len(sth.root) != 32:
            raise TreeHeadError(f"malformed tree head: size {sth.size}, root {sth.root.hex()}")
        return sth


def tree_head_message(size: int, root: bytes, timestamp_ms: int) -> bytes:
    return f"{HEADER}\n{size}\n{root.hex()}\n{timestamp_ms}\n".encode()


def sign_tree_head(
    key: Ed25519PrivateKey, size: int, root: bytes, timestamp_ms: int
) -> SignedTreeHead:
    signature = key.sign(tree_head_message(size, root, timestamp_ms))
    return SignedTreeHead(size, root, timestamp_ms, key_id(key.public_key()), signature)


def verify_tree_head(sth: SignedTreeHead, public_key: Ed25519PublicKey) -> None:
    """Raise ``TreeHeadError`` unless ``sth`` is signed by ``public_key``."""
    if sth.key_id != key_id(public_key):
        raise TreeHeadError(
            f"tree head of size {sth.size} is not signed by key {key_id(public_key)} "
            f"(it names key {sth.key_id})"
        )
    try:
        public_key.verify(sth.signature, sth.message())
    except InvalidSignature:
        raise TreeHeadError(
            f"tree head of size {sth.size} is not signed by key {key_id(public_key)} "
            f"(it names key {sth.key_id})"
        ) from None
