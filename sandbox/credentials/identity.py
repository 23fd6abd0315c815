"""Who a caller is: a ``Principal(role, name)`` read only from a verified credential.

A caller never names itself. Its role and name are written into its certificate by the local CA
(the SAN URI ``sandbox://ROLE/NAME``, with the name percent-encoded, and the subject CN = NAME,
OU = ROLE) and are read back only from the peer certificate that the TLS handshake verified, as
gRPC reports it in ``context.auth_context()``; or from a hashed API key
(:mod:`sandbox.credentials.apikeys`). :func:`require_role` then refuses a role acting as another.

>>> p = Principal("firm", "智慧金融")
>>> p.uri
'sandbox://firm/%E6%99%BA%E6%85%A7%E9%87%91%E8%9E%8D'
>>> Principal.from_uri(p.uri) == p
True
>>> require_role(p, "firm").name
'智慧金融'
>>> require_role(p, "department")
Traceback (most recent call last):
...
sandbox.errors.RoleError: firm '智慧金融' may not do this; it needs the role department
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args
from urllib.parse import quote, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from sandbox.errors import AuthenticationError, CredentialError, RoleError

Role = Literal["hub", "node", "department", "firm", "regulator"]
#: Every role, in the order the docs list them.
ROLES: tuple[Role, ...] = get_args(Role)
#: Roles that authenticate only with a client certificate (never with an API key).
MACHINE_ROLES: tuple[Role, ...] = ("hub", "node")
URI_SCHEME = "sandbox"

# A name: letters or digits (any script), then letters, digits, '.', '_' or '-'; at most 64
# characters (the X.509 CN limit). No '/', ':', spaces or control characters.
_NAME = re.compile(r"[^\W_][\w.\-]{0,63}")


def check_role(role: str) -> Role:
    """``role`` as a :data:`Role`, or a ``CredentialError`` naming the roles."""
    if role not in ROLES:
        raise CredentialError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    """``name`` if it may name a principal, else a ``CredentialError`` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CredentialError(
            f"invalid name {name!r}: use 1 to 64 letters or digits (any script), '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Principal:
    """An authenticated party: its role and its name within that role."""

    role: Role
    name: str

    def __post_init__(self) -> None:
        check_role(self.role)
        check_name(self.name)

    @property
    def uri(self) -> str:
        """The SAN URI that carries this identity in a certificate."""
        return f"{URI_SCHEME}://{self.role}/{quote(self.name, safe='')}"

    @classmethod
    def from_uri(cls, uri: str) -> Principal:
        """Parse ``sandbox://ROLE/NAME``; a ``CredentialError`` for anything else."""
        parts = urlsplit(uri)
        path = parts.path[1:] if parts.path.startswith("/") else ""
        if (
            parts.scheme != URI_SCHEME
            or not path
            or "/" in path
            or parts.query
            or parts.fragment
            or parts.username is not None
            or parts.port is not None
        ):
            raise CredentialError(f"not a sandbox identity URI: {uri!r}")
        return cls(check_role(parts.netloc), unquote(path, errors="strict"))

    def __str__(self) -> str:
        return f"{self.role} {self.name!r}"


def require_role(principal: Principal, *roles: Role) -> Principal:
    """``principal`` if its role is one of ``roles``; otherwise a ``RoleError``.

    Call it at the top of every operation with the roles that may perform it."""
    if not roles:
        raise ValueError("require_role needs at least one role")
    if principal.role not in roles:
        raise RoleError(f"{principal} may not do this; it needs the role {' or '.join(roles)}")
    return principal


def _load_certificate(cert: x509.Certificate | bytes | str) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    data = cert.encode("ascii") if isinstance(cert, str) else cert
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise AuthenticationError(f"the peer certificate cannot be read ({exc})") from None


def principal_from_certificate(
    cert: x509.Certificate | bytes | str,
    *,
    issuer: x509.Certificate | None = None,
    now: datetime | None = None,
) -> Principal:
    """The principal a verified certificate (PEM, DER or parsed) names.

    The identity is the single ``sandbox://`` SAN URI; the subject CN must equal its name and the
    OU its role. With ``issuer`` (the CA certificate) the signature and the validity period are
    checked again here, so a certificate that did not come through a verifying TLS handshake
    cannot pass by accident. Anything else raises ``AuthenticationError``."""
    certificate = _load_certificate(cert)
    if issuer is not None:
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise AuthenticationError(
                "the peer certificate was not issued by this sandbox's CA; ask the authority "
                "for a certificate from `sandbox certs issue`"
            ) from None
        moment = now or datetime.now(UTC)
        if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
            raise AuthenticationError(
                "the peer certificate is expired or not yet valid; ask the authority for a new one"
            )
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = [
            u
            for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith(f"{URI_SCHEME}://")
        ]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) != 1:
        raise AuthenticationError(
            "the peer certificate carries no single sandbox identity (SAN URI sandbox://ROLE/NAME);"
            " issue one with `sandbox certs issue ROLE NAME`"
        )
    try:
        principal = Principal.from_uri(uris[0])
    except (CredentialError, UnicodeDecodeError) as exc:
        raise AuthenticationError(f"the peer certificate's identity is malformed: {exc}") from None
    cn = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    ou = [
        str(a.value)
        for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    ]
    if cn != [principal.name] or ou != [principal.role]:
        raise AuthenticationError(
            "the peer certificate's subject does not match its sandbox identity; it was not "
            "made by `sandbox certs issue`"
        )
    return principal


def principal_from_auth_context(
    auth_context: Mapping[str, Sequence[bytes]],
    *,
    issuer: x509.Certificate | None = None,
) -> Principal:
    """The caller's principal from a gRPC ``context.auth_context()``.

    gRPC fills ``x509_pem_cert`` with the client certificate that the TLS handshake verified
    (the server must use ``require_client_auth=True`` with this sandbox's CA as root). A call
    without TLS or without a client certificate raises ``AuthenticationError``.

    >>> principal_from_auth_context({"transport_security_type": [b"insecure"]})
    Traceback (most recent call last):
    ...
    sandbox.errors.AuthenticationError: the call did not come over TLS with a client certificate; \
connect with the certificate from `sandbox certs issue`
    """
    transport = list(auth_context.get("transport_security_type", ()))
    pems = list(auth_context.get("x509_pem_cert", ()))
    if transport != [b"ssl"] or len(pems) != 1:
        raise AuthenticationError(
            "the call did not come over TLS with a client certificate; connect with the "
            "certificate from `sandbox certs issue`"
        )
    return principal_from_certificate(pems[0], issuer=issuer)
