"""A department node as a witness of the hub's transparency log.

Each node keeps, in its state directory,

* ``witness-key.pem``: its own Ed25519 witness key (mode 0600, created at first start; the
  department hands the public half, ``sandbox node witness-key --state DIR``, to its
  regulators), and
* ``witness.db``: a :class:`policies.witness.Witness` memory, the last tree head it cosigned.

:class:`NodeWitness` answers ``NodeService.Witness``: it cosigns a signed tree head only if the
authority signed it and the consistency proof shows it extends the last head this node
cosigned (:meth:`policies.witness.Witness.witness`). The message conversions
(:func:`cosignature_pb`, :func:`cosignature_from_pb`) are shared with the hub and the SDK.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.errors import WitnessError
from policies.keys import public_key_pem
from policies.treehead import SignedTreeHead
from policies.witness import Cosignature, Witness
from sandbox.errors import NodeServiceError
from sandbox.protocol.v1 import sandbox_pb2 as pb

#: The node's private witness key inside its state directory.
WITNESS_KEY_FILE = "witness-key.pem"
#: The node's witness memory (the last head it cosigned) inside its state directory.
WITNESS_DB_FILE = "witness.db"


def load_witness_key(state_dir: Path | str, *, create: bool = True) -> Ed25519PrivateKey:
    """The node's witness key from ``state_dir``; created (mode 0600) if absent and ``create``.

    A key others may read, or a file that is not an Ed25519 PEM key, is a ``NodeServiceError``.
    """
    state = Path(state_dir)
    path = state / WITNESS_KEY_FILE
    if create and not path.exists():
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = state / f".{WITNESS_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: keep its key
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except FileNotFoundError:
        raise NodeServiceError(
            f"no witness key at {path}; start the node once (it creates the key) or check --state"
        ) from None
    except OSError as exc:
        raise NodeServiceError(f"cannot read the witness key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise NodeServiceError(
            f"{path} is readable by others (mode {mode:04o}); run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise NodeServiceError(
            f"{path} is not a PEM private key; restore it from a backup"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NodeServiceError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def witness_public_pem(state_dir: Path | str) -> str:
    """The node's witness public key as PEM text (what a department hands its regulator);
    the key must exist (the node creates it at first start)."""
    return public_key_pem(load_witness_key(state_dir, create=False).public_key()).decode()


def tree_head_pb(head: SignedTreeHead) -> pb.SignedTreeHead:
    return pb.SignedTreeHead(
        size=head.size,
        root=head.root,
        timestamp_ms=head.timestamp_ms,
        key_id=head.key_id,
        signature=head.signature,
    )


def tree_head_from_pb(m: pb.SignedTreeHead) -> SignedTreeHead:
    return SignedTreeHead(m.size, bytes(m.root), m.timestamp_ms, m.key_id, bytes(m.signature))


def cosignature_pb(cos: Cosignature) -> pb.Cosignature:
    """A :class:`policies.witness.Cosignature` as its protobuf message."""
    return pb.Cosignature(
        witness=cos.witness,
        witness_key_id=cos.witness_key_id,
        authority_key_id=cos.authority_key_id,
        size=cos.size,
        root=cos.root,
        head_timestamp_ms=cos.head_timestamp_ms,
        timestamp_ms=cos.timestamp_ms,
        signature=cos.signature,
    )


def cosignature_from_pb(m: pb.Cosignature) -> Cosignature:
    """The inverse of :func:`cosignature_pb`, checked as ``Cosignature.from_json`` checks
    (``WitnessError`` if malformed)."""
    return Cosignature.from_json(
        {
            "witness": m.witness,
            "witness_key_id": m.witness_key_id,
            "authority_key_id": m.authority_key_id,
            "size": m.size,
            "root": bytes(m.root).hex(),
            "head_timestamp_ms": m.head_timestamp_ms,
            "timestamp_ms": m.timestamp_ms,
            "signature": bytes(m.signature).hex(),
        }
    )


class NodeWitness:
    """One node's witness: its key, its memory and the authority key whose heads it checks."""

    def __init__(self, witness: Witness, authority_key: Ed25519PublicKey, authority_key_id: str):
        self.memory = witness
        self.authority_key = authority_key
        self.authority_key_id = authority_key_id
        self._lock = threading.Lock()  # one SQLite connection: one check-and-cosign at a time

    @classmethod
    def open(cls, state_dir: Path | str, name: str, authority_key: Ed25519PublicKey) -> NodeWitness:
        """Open (creating at first start) the key and memory in ``state_dir``."""
        from policies.keys import key_id

        key = load_witness_key(state_dir)
        memory = Witness(Path(state_dir) / WITNESS_DB_FILE, name, key)
        return cls(memory, authority_key, key_id(authority_key))

    @property
    def name(self) -> str:
        return self.memory.name

    def public_key_pem(self) -> str:
        return public_key_pem(self.memory.public_key).decode()

    def last_head(self) -> SignedTreeHead | None:
        """The last head this node cosigned for its authority (``None``: never)."""
        with self._lock:
            last = self.memory.last(self.authority_key_id)
        return None if last is None else last[0]

    def witness(self, request: pb.WitnessRequest, now_ms: int | None = None) -> Cosignature:
        """Cosign the request's head, or raise ``WitnessError`` saying why not."""
        head = tree_head_from_pb(request.tree_head)
        proof = [bytes(p) for p in request.consistency_proof]
        with self._lock:
            last = self.memory.last(self.authority_key_id)
            if last is not None and head.size > last[0].size and request.from_size != last[0].size:
                raise WitnessError(
                    f"not cosigned: the consistency proof starts at {request.from_size} entries, "
                    f"this witness last cosigned {last[0].size}; send a proof from "
                    f"{last[0].size} (ReportMetadata names the last witnessed head)"
                )
            when = int(time.time() * 1000) if now_ms is None else now_ms
            return self.memory.witness(head, proof, self.authority_key, when)

    def close(self) -> None:
        self.memory.close()
