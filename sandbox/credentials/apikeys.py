"""API keys for firms, departments and regulators, stored only as salted scrypt hashes.

A key looks like ``sbx_<id>_<secret>``: the id (16 hex digits) finds the row, the secret
(256 random bits) is checked against ``scrypt(secret, salt)`` with ``hmac.compare_digest``. The
key is shown once, when issued; the store (a SQLite file, mode 0600) holds the id, the
principal, the salt, the hash and the revocation time, never the key. Hubs and nodes do not get
API keys: they authenticate with client certificates.

A successful check is remembered in memory by a keyed BLAKE2b digest of the presented key (not
the key) so that a busy hub does not pay for scrypt on every call; revocation is read from the
store on every call.

>>> import tempfile
>>> from pathlib import Path
>>> store = ApiKeyStore(Path(tempfile.mkdtemp()) / "keys.db")
>>> key = issue_api_key(store, "firm", "acme")
>>> key.startswith("sbx_")
True
>>> authenticate(store, key)
Principal(role='firm', name='acme')
>>> revoke_api_key(store, key_id(key))
>>> authenticate(store, key)
Traceback (most recent call last):
...
sandbox.errors.AuthenticationError: this API key was revoked; ask the authority for a new one
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sandbox.credentials.identity import MACHINE_ROLES, Principal, check_name, check_role
from sandbox.errors import AuthenticationError, CredentialError

PREFIX = "sbx"
_KEY = re.compile(r"sbx_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")
# scrypt cost: about 50 ms and 16 MiB per check. The secret has 256 random bits, so the cost
# only matters if the store leaks; it is stored per row so that it can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_DKLEN = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    n INTEGER NOT NULL,
    r INTEGER NOT NULL,
    p INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


@dataclass(frozen=True)
class ApiKeyInfo:
    """One stored key, without any secret: what ``sandbox keys list`` shows."""

    key_id: str
    principal: Principal
    created_at: str
    revoked_at: str | None


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("ascii"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_DKLEN
    )


def key_id(presented: str) -> str:
    """The public id part of a key (what ``revoke`` takes); ``AuthenticationError`` if malformed."""
    match = _KEY.fullmatch(presented.strip()) if isinstance(presented, str) else None
    if match is None:
        raise AuthenticationError(
            "not a sandbox API key (expected sbx_<id>_<secret>); check the key in your profile "
            "or environment"
        )
    return match.group(1)


class ApiKeyStore:
    """The SQLite file of hashed API keys (created 0600; refused if others may read it)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[str, tuple[bytes, Principal]] = {}
        self._open()

    def _open(self) -> None:
        try:
            if not self.path.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.chmod(self.path, 0o600)
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError as exc:
            raise CredentialError(
                f"cannot create the key store {self.path}: {exc.strerror}; choose another --store"
            ) from None
        if mode & 0o077:
            raise CredentialError(
                f"{self.path} is readable by others (mode {mode:04o}); run `chmod 600 {self.path}`"
            )
        with self._connect() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=10)) as db, db:
                yield db
        except sqlite3.Error as exc:
            raise CredentialError(
                f"the key store {self.path} cannot be used ({exc}); check the --store path"
            ) from None

    def _digest(self, presented: str) -> bytes:
        return hashlib.blake2b(presented.encode("ascii"), key=self._cache_key).digest()

    def issue(self, role: str, name: str) -> str:
        """Store a new key for ``(role, name)`` and return it; it is never shown again."""
        checked = check_role(role)
        if checked in MACHINE_ROLES:
            raise CredentialError(
                f"a {checked} authenticates with a client certificate, not an API key; use "
                f"`sandbox certs issue {checked} NAME`"
            )
        principal = Principal(checked, check_name(name))
        new_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), os.urandom(16)
        digest = _hash(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        with self._connect() as db:
            db.execute(
                "INSERT INTO api_keys (key_id, role, name, salt, hash, n, r, p, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    principal.role,
                    principal.name,
                    salt,
                    digest,
                    SCRYPT_N,
                    SCRYPT_R,
                    SCRYPT_P,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
        return f"{PREFIX}_{new_id}_{secret}"

    def authenticate(self, presented: str) -> Principal:
        """The principal a presented key belongs to; ``AuthenticationError`` otherwise."""
        kid = key_id(presented)
        presented = presented.strip()
        secret = presented.split("_", 2)[2]
        with self._connect() as db:
            row = db.execute(
                "SELECT role, name, salt, hash, n, r, p, revoked_at FROM api_keys WHERE key_id = ?",
                (kid,),
            ).fetchone()
        if row is None:
            raise AuthenticationError("unknown API key; ask the authority for a new one")
        role, name, salt, stored, n, r, p, revoked_at = row
        if revoked_at is not None:
            with self._lock:
                self._verified.pop(kid, None)
            raise AuthenticationError("this API key was revoked; ask the authority for a new one")
        digest = self._digest(presented)
        with self._lock:
            cached = self._verified.get(kid)
        if cached is not None and hmac.compare_digest(cached[0], digest):
            return cached[1]
        if not hmac.compare_digest(_hash(secret, salt, n, r, p), stored):
            raise AuthenticationError("wrong API key secret; check the key or ask for a new one")
        principal = Principal(check_role(role), name)
        with self._lock:
            self._verified[kid] = (digest, principal)
        return principal

    def revoke(self, kid: str) -> None:
        """Revoke a key by its id; it is refused from the next call on."""
        with self._connect() as db:
            updated = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(timespec="seconds"), kid),
            ).rowcount
            known = db.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (kid,)).fetchone()
        with self._lock:
            self._verified.pop(kid, None)
        if not known:
            raise CredentialError(f"no API key with id {kid!r}; `sandbox keys list` shows them")
        if not updated:
            raise CredentialError(f"API key {kid} is already revoked")

    def entries(self) -> list[ApiKeyInfo]:
        """Every stored key (id, principal, dates), oldest first; no secrets."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT key_id, role, name, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, key_id"
            ).fetchall()
        return [ApiKeyInfo(k, Principal(check_role(ro), na), c, rv) for k, ro, na, c, rv in rows]


def _store(store: ApiKeyStore | Path | str) -> ApiKeyStore:
    return store if isinstance(store, ApiKeyStore) else ApiKeyStore(store)


def issue_api_key(store: ApiKeyStore | Path | str, role: str, name: str) -> str:
    """Issue a key for ``(role, name)``; the returned key is shown once and stored hashed."""
    return _store(store).issue(role, name)


def authenticate(store: ApiKeyStore | Path | str, presented: str) -> Principal:
    """The principal of a presented key, or ``AuthenticationError`` (unknown, wrong, revoked)."""
    return _store(store).authenticate(presented)


def revoke_api_key(store: ApiKeyStore | Path | str, kid: str) -> None:
    """Revoke the key with id ``kid`` (the part after ``sbx_``)."""
    _store(store).revoke(kid)
