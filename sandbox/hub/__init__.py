"""The hub (数据主管部门) as a gRPC service: it authenticates callers from their credentials,
decides with the policy engine, signs instructions, routes each query to the node that holds
the dataset, charges the budget and logs every step. See ``docs/hub.md``.

* :mod:`sandbox.hub.auth` — who is calling (verified certificate or hashed API key), roles,
  errors as gRPC status codes;
* :mod:`sandbox.hub.firm` — ``FirmService``: catalog, remaining budget, the governed query;
* :mod:`sandbox.hub.regulator` — ``RegulatorService``: tree heads, proofs, entries;
* :mod:`sandbox.hub.server` — :func:`start`: TLS, health and reflection.
"""

from sandbox.lazy import lazy_exports

#: Where each public name lives. They are imported on first use, so that the command line
#: (``sandbox --help``, ``sandbox certs ...``) does not load the query engine and gRPC stack.
_WHERE = {
    "Authenticator": "sandbox.hub.auth",
    "bearer_key": "sandbox.hub.auth",
    "status_for": "sandbox.hub.auth",
    "FirmService": "sandbox.hub.firm",
    "NodeClient": "sandbox.hub.firm",
    "NodeRoute": "sandbox.hub.firm",
    "release_bytes": "sandbox.hub.firm",
    "RegulatorService": "sandbox.hub.regulator",
    "HUB_SERVICES": "sandbox.hub.server",
    "HubServer": "sandbox.hub.server",
    "HubTLS": "sandbox.hub.server",
    "start": "sandbox.hub.server",
}


__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "HUB_SERVICES",
    "Authenticator",
    "FirmService",
    "HubServer",
    "HubTLS",
    "NodeClient",
    "NodeRoute",
    "RegulatorService",
    "bearer_key",
    "release_bytes",
    "start",
    "status_for",
]
