"""Credentials: a local CA, certificates that carry a role and a name, and hashed API keys.

A caller's role and identity come from a credential (a client certificate verified by TLS, or an
API key checked against its stored hash), never from an argument. See ``docs/credentials.md``.

>>> from sandbox.credentials import Principal, require_role
>>> require_role(Principal("regulator", "csrc"), "regulator", "department").role
'regulator'
"""

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
