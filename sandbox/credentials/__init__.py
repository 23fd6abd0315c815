"""Credentials: a local CA, certificates that carry a role and a name, and hashed API keys.

A caller's role and identity come from a credential (a client certificate verified by TLS, or an
API key checked against its stored hash), never from an argument. See ``docs/credentials.md``.

>>> from sandbox.credentials import Principal, require_role
>>> require_role(Principal("regulator", "csrc"), "regulator", "department").role
'regulator'
"""

from typing import TYPE_CHECKING

from sandbox.lazy import lazy_exports

if TYPE_CHECKING:
    from sandbox.credentials.apikeys import (
        ApiKeyInfo,
        ApiKeyStore,
        authenticate,
        issue_api_key,
        key_id,
        revoke_api_key,
    )
    from sandbox.credentials.ca import (
        CertificateAuthority,
        IssuedCertificate,
        init_ca,
        issue_certificate,
        load_ca,
        make_certificate,
    )
    from sandbox.credentials.identity import (
        ROLES,
        Principal,
        Role,
        principal_from_auth_context,
        principal_from_certificate,
        require_role,
    )

#: Where each public name lives: imported on first use, so that loading the package (for
#: one of its names) does not load every module and the X.509 stack.
_WHERE = {
    "ApiKeyInfo": "sandbox.credentials.apikeys",
    "ApiKeyStore": "sandbox.credentials.apikeys",
    "authenticate": "sandbox.credentials.apikeys",
    "issue_api_key": "sandbox.credentials.apikeys",
    "key_id": "sandbox.credentials.apikeys",
    "revoke_api_key": "sandbox.credentials.apikeys",
    "CertificateAuthority": "sandbox.credentials.ca",
    "IssuedCertificate": "sandbox.credentials.ca",
    "init_ca": "sandbox.credentials.ca",
    "issue_certificate": "sandbox.credentials.ca",
    "load_ca": "sandbox.credentials.ca",
    "make_certificate": "sandbox.credentials.ca",
    "ROLES": "sandbox.credentials.identity",
    "Principal": "sandbox.credentials.identity",
    "Role": "sandbox.credentials.identity",
    "principal_from_auth_context": "sandbox.credentials.identity",
    "principal_from_certificate": "sandbox.credentials.identity",
    "require_role": "sandbox.credentials.identity",
}

__all__ = [
    "ROLES",
    "ApiKeyInfo",
    "ApiKeyStore",
    "CertificateAuthority",
    "IssuedCertificate",
    "Principal",
    "Role",
    "authenticate",
    "init_ca",
    "issue_api_key",
    "issue_certificate",
    "key_id",
    "load_ca",
    "make_certificate",
    "principal_from_auth_context",
    "principal_from_certificate",
    "require_role",
    "revoke_api_key",
]


__getattr__ = lazy_exports(__name__, _WHERE)
