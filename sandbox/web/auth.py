"""Sessions of the web view: an API key posted once, then an HMAC-signed cookie.

The cookie holds the principal (role and name from the API key store, never from the form),
an expiry and a per-session CSRF token, signed with HMAC-SHA256 under a secret drawn at
process start: restarting the hub logs everybody out. Only ``regulator`` and ``department``
keys may log in; a firm's key is refused.

>>> s = Sessions(secret=b"k" * 32)
>>> cookie = s.issue("regulator", "csrc", now=0)
>>> s.read(cookie, now=1).name
'csrc'
>>> s.read(cookie + "x", now=1) is None
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "sbx_session"
SESSION_SECONDS = 8 * 3600
WEB_ROLES = ("regulator", "department")


@dataclass(frozen=True)
class Session:
    role: str
    name: str
    expires: int
    csrf: str


class Sessions:
    """Issue and check signed session cookies (a fresh random secret per process)."""

    def __init__(self, secret: bytes | None = None, lifetime_s: int = SESSION_SECONDS) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.lifetime_s = lifetime_s

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, role: str, name: str, now: float | None = None) -> str:
        """A cookie value for ``role``/``name`` valid for ``lifetime_s`` seconds."""
        now = time.time() if now is None else now
        body = {
            "role": role,
            "name": name,
            "exp": int(now) + self.lifetime_s,
            "csrf": secrets.token_urlsafe(24),
        }
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return f"{payload}.{self._mac(payload.encode())}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or ``None`` if absent, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            body = json.loads(raw)
            session = Session(str(body["role"]), str(body["name"]), int(body["exp"]), body["csrf"])
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time() if now is None else now
        if session.expires <= now or session.role not in WEB_ROLES:
            return None
        return session


def csrf_ok(session: Session, token: str | None) -> bool:
    """Whether a form's CSRF token is the session's."""
    return token is not None and hmac.compare_digest(session.csrf, token)
