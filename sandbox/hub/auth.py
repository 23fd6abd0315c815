"""Who is calling the hub: a :class:`~sandbox.credentials.Principal` read from a credential only.

A call carries one of two credentials, and nothing else is ever read as an identity:

* a client certificate that the TLS handshake verified against this sandbox's CA (the hub's
  mTLS port requires one): :func:`sandbox.credentials.principal_from_auth_context`;
* an API key in the ``authorization: Bearer sbx_...`` metadata header (the hub's API-key port,
  server-side TLS only, or plaintext loopback with ``--insecure``), checked against the hashed
  :class:`~sandbox.credentials.ApiKeyStore`.

A call with a certificate and a key is accepted only when both name the same principal.
:meth:`Authenticator.serve` runs one RPC: it authenticates the caller, checks its role
(:func:`sandbox.credentials.require_role`), runs the handler and turns our errors into gRPC
status codes, each with a one-line message saying what to do next. Every refusal is written to
the ``sandbox.hub`` logger with the method, the peer and the reason.

>>> status_for(AuthenticationError("no credential"))
<StatusCode.UNAUTHENTICATED: (16, 'unauthenticated')>
>>> bearer_key([("authorization", "Bearer sbx_0123456789abcdef_x")])
'sbx_0123456789abcdef_x'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509

from policies.errors import (
    BudgetExceededError,
    GrantRevokedError,
    InvalidRequestError,
    LogIntegrityError,
    PolicyError,
    StateError,
    UnknownGrantError,
)
from sandbox.credentials import ApiKeyStore, Principal, principal_from_auth_context
from sandbox.credentials.identity import Role, require_role
from sandbox.errors import (
    AuthenticationError,
    CatalogError,
    Denied,
    ManifestError,
    NodeRefusedError,
    NodeUnavailableError,
    QueryError,
    RoleError,
    SandboxError,
    UnknownDatasetError,
)

#: The metadata header that carries an API key, as ``Bearer sbx_<id>_<secret>``.
AUTHORIZATION = "authorization"
_BEARER = "bearer "

log = logging.getLogger("sandbox.hub")
T = TypeVar("T")

# The most specific class first: the first match names the status.
_STATUS: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
    (RoleError, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownDatasetError, grpc.StatusCode.NOT_FOUND),
    (NodeUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (NodeRefusedError, grpc.StatusCode.FAILED_PRECONDITION),
    (BudgetExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (GrantRevokedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownGrantError, grpc.StatusCode.PERMISSION_DENIED),
    (StateError, grpc.StatusCode.UNAVAILABLE),
    (LogIntegrityError, grpc.StatusCode.INTERNAL),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (QueryError, grpc.StatusCode.INVALID_ARGUMENT),
    (ManifestError, grpc.StatusCode.INVALID_ARGUMENT),
    (CatalogError, grpc.StatusCode.NOT_FOUND),
    (PolicyError, grpc.StatusCode.FAILED_PRECONDITION),
    (SandboxError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status an error of ours maps to (``INTERNAL`` for anything unexpected).

    A policy denial is ``PERMISSION_DENIED``, or ``RESOURCE_EXHAUSTED`` when the only reasons
    are exhausted budgets.
    """
    if isinstance(exc, Denied):
        codes = {r.code for r in exc.decision.reasons}
        if codes and codes <= {"budget-exhausted"}:
            return grpc.StatusCode.RESOURCE_EXHAUSTED
        return grpc.StatusCode.PERMISSION_DENIED
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return grpc.StatusCode.INTERNAL


def bearer_key(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The API key of an ``authorization: Bearer ...`` header, or ``None`` when there is none.

    More than one ``authorization`` header, or one that is not a bearer token, is refused.
    """
    values = [v for k, v in (metadata or ()) if k.lower() == AUTHORIZATION]
    if not values:
        return None
    if len(values) > 1:
        raise AuthenticationError("send one authorization header, not several")
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not value.lower().startswith(_BEARER):
        raise AuthenticationError(
            "the authorization header must read `Bearer sbx_<id>_<secret>`; check your profile"
        )
    return value[len(_BEARER) :].strip()


class Authenticator:
    """Reads the caller's principal from a verified certificate or a hashed API key.

    ``ca_certificate`` is this sandbox's CA (``None`` only for a plaintext loopback hub, which
    sees no certificates); ``api_keys`` the key store (``None``: API keys are refused).
    """

    def __init__(
        self, ca_certificate: x509.Certificate | None, api_keys: ApiKeyStore | None
    ) -> None:
        self.ca_certificate = ca_certificate
        self.api_keys = api_keys

    def principal(self, context: Any) -> Principal:
        """The authenticated caller of ``context``; ``AuthenticationError`` otherwise."""
        auth = context.auth_context()
        key = bearer_key(context.invocation_metadata())
        from_key = None if key is None else self._from_key(key)
        if auth.get("x509_pem_cert"):
            if self.ca_certificate is None:
                raise AuthenticationError("this hub has no CA configured to check certificates")
            from_cert = principal_from_auth_context(auth, issuer=self.ca_certificate)
            if from_key is not None and from_key != from_cert:
                raise AuthenticationError(
                    f"the API key belongs to {from_key}, the certificate to {from_cert}; "
                    "send one credential"
                )
            return from_cert
        if from_key is None:
            raise AuthenticationError(
                "no credential: connect with your client certificate (mTLS port) or send "
                "`authorization: Bearer <API key>` (API-key port)"
            )
        return from_key

    def _from_key(self, key: str) -> Principal:
        if self.api_keys is None:
            raise AuthenticationError(
                "this hub accepts no API keys; connect with the client certificate from "
                "`sandbox certs issue`"
            )
        return self.api_keys.authenticate(key)

    def serve(
        self, method: str, context: Any, roles: tuple[Role, ...], handler: Callable[[Principal], T]
    ) -> T:
        """Run one RPC: authenticate, require one of ``roles``, call ``handler(principal)``.

        Our errors abort the call with :func:`status_for`'s code and their message; anything
        unexpected aborts with ``INTERNAL`` and is logged with its traceback.
        """
        who: Principal | None = None
        try:
            who = require_role(self.principal(context), *roles)
            return handler(who)
        except (SandboxError, PolicyError) as exc:
            status = status_for(exc)
            message = " ".join(str(exc).split()) or type(exc).__name__
            log.warning(
                "refused %s from %s (%s): %s %s",
                method,
                who or "an unauthenticated caller",
                context.peer(),
                status.name,
                message,
            )
            context.abort(status, message)
        except Exception:
            log.exception("%s failed for %s (%s)", method, who, context.peer())
            context.abort(
                grpc.StatusCode.INTERNAL,
                f"the hub failed while serving {method}; nothing was released to you; "
                "try again and report it if it persists",
            )
        raise AssertionError("context.abort returned")  # pragma: no cover


__all__ = ["AUTHORIZATION", "Authenticator", "bearer_key", "require_role", "status_for"]
