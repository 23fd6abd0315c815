"""Ed25519 signing keys of the log, kept as PEM files in a state directory.

The private key is created on first use with file mode 0600 and refused if anyone but the
owner can read it. Regulators receive only ``log-public.pem``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from policies.errors import KeyFileError

PRIVATE_KEY_FILE = "log-signing.pem"
PUBLIC_KEY_FILE = "log-public.pem"


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _create(keys_dir: Path) -> None:
    """Write a new key pair; the private key appears whole or not at all (tmp + link)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = keys_dir / f".{PRIVATE_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, keys_dir / PRIVATE_KEY_FILE)  # fails if another process won the race
        except FileExistsError:
            return
    finally:
        tmp.unlink(missing_ok=True)
    _write_public(keys_dir, key)


def _write_public(keys_dir: Path, key: Ed25519PrivateKey) -> None:
    tmp = keys_dir / (PUBLIC_KEY_FILE + f".{os.getpid()}.tmp")
    tmp.write_bytes(public_key_pem(key.public_key()))
    os.replace(tmp, keys_dir / PUBLIC_KEY_FILE)


def load_signing_key(keys_dir: Path, *, create: bool = False) -> Ed25519PrivateKey:
    """Load ``keys_dir/log-signing.pem``; with ``create``, make it (mode 0600) if absent.

    A missing key without ``create``, an empty or malformed file, or a file others may read
    is a :class:`KeyFileError`: a log is never silently given a new key.
    """
    keys_dir = Path(keys_dir)
    path = keys_dir / PRIVATE_KEY_FILE
    try:
        if create and not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            _create(keys_dir)
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"no log signing key at {path}; restore the key file (it was created with the "
            "log) or pass the right keys directory"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the log signing key {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path} has mode {mode:o}; the log signing key must be readable by its owner "
            f"only: run `chmod 600 {path}`"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read the log signing key {path}: {exc.strerror}") from None
    if not data.strip():
        raise KeyFileError(
            f"the log signing key {path} is empty; restore it from a backup (a new key would "
            "make every earlier tree head unverifiable)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not a PEM private key; restore it from a backup") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
    if not (keys_dir / PUBLIC_KEY_FILE).exists():
        with contextlib.suppress(OSError):  # a read-only keys directory: derive it when needed
            _write_public(keys_dir, key)
    return key


def load_or_create_signing_key(keys_dir: Path) -> Ed25519PrivateKey:
    """Load ``keys_dir/log-signing.pem``, creating it (mode 0600) and the public key if absent."""
    return load_signing_key(keys_dir, create=True)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file (as written next to the signing key)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
    return key
