"""The hub (数据主管部门) as a gRPC service: it authenticates callers from their credentials,
decides with the policy engine, signs instructions, routes each query to the node that holds
the dataset, charges the budget and logs every step. See ``docs/hub.md``.

* :mod:`sandbox.hub.auth` — who is calling (verified certificate or hashed API key), roles,
  errors as gRPC status codes;
* :mod:`sandbox.hub.firm` — ``FirmService``: catalog, remaining budget, the governed query;
* :mod:`sandbox.hub.regulator` — ``RegulatorService``: tree heads, proofs, entries;
* :mod:`sandbox.hub.server` — :func:`start`: TLS, health and reflection.
"""

from sandbox.hub.auth import Authenticator, bearer_key, status_for
from sandbox.hub.firm import FirmService, NodeClient, NodeRoute, release_bytes
from sandbox.hub.regulator import RegulatorService
from sandbox.hub.server import HUB_SERVICES, HubServer, HubTLS, start

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
