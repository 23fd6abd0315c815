"""Start the hub as a gRPC server: FirmService, RegulatorService and DepartmentService, health
and reflection.

TLS everywhere by default. The hub listens on up to two ports:

* the mTLS port (``address``): every caller presents a client certificate from this sandbox's
  CA (``require_client_auth``); its identity is read from that certificate;
* the API-key port (``api_key_address``, optional): server-side TLS only; callers send
  ``authorization: Bearer sbx_...`` (gRPC's TLS cannot ask for an optional client
  certificate, hence a second port).

``insecure=True`` serves plaintext, API keys only, and is refused unless every address is a
loopback address. The hub talks to nodes with its own certificate (mTLS), or in plaintext when
it is itself insecure; it asks them to witness the tree heads it serves
(:mod:`sandbox.hub.witnesses`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from grpc_health.v1 import (  # type: ignore[import-untyped,unused-ignore]
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped,unused-ignore]

from policies.authority import Authority
from sandbox.catalog import Catalog
from sandbox.credentials import ApiKeyStore
from sandbox.errors import HubError
from sandbox.hub.auth import Authenticator
from sandbox.hub.department import DepartmentService
from sandbox.hub.firm import FirmService
from sandbox.hub.jobs import HubJobs
from sandbox.hub.nodes import DEFAULT_NODE_TIMEOUT_S, NodeClient, NodeRoute
from sandbox.hub.regulator import RegulatorService
from sandbox.hub.witnesses import HubWitnesses
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

#: The services the hub serves (what health reports and reflection lists).
HUB_SERVICES = (
    "sandbox.v1.FirmService",
    "sandbox.v1.RegulatorService",
    "sandbox.v1.DepartmentService",
)


@dataclass(frozen=True)
class HubTLS:
    """The hub's certificate and key (role ``hub``) and the CA certificate, all PEM."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    @classmethod
    def from_files(cls, cert: Path | str, key: Path | str, ca: Path | str) -> HubTLS:
        """Read the three PEM files (``HubError`` naming the one that cannot be read)."""
        data = []
        for path in (cert, key, ca):
            try:
                data.append(Path(path).read_bytes())
            except OSError as exc:
                raise HubError(f"cannot read {path}: {exc.strerror}; check --tls files") from None
        return cls(*data)

    def ca_certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.ca_pem)
        except ValueError:
            raise HubError("the CA file is not a PEM certificate; pass the CA's ca.pem") from None


@dataclass
class HubServer:
    """A running hub: its bound ports; :meth:`stop` ends it."""

    server: grpc.Server
    port: int
    api_key_port: int | None
    health: health.HealthServicer
    nodes: NodeClient
    firm: FirmService = field(repr=False)
    witnesses: HubWitnesses | None = field(default=None, repr=False)

    def stop(self, grace: float | None = None) -> None:
        for name in ("", *HUB_SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()
        if self.witnesses is not None:
            self.witnesses.close()
        self.nodes.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` names a loopback interface (``127.0.0.0/8``, ``::1``, localhost).

    >>> is_loopback("127.0.0.1:0"), is_loopback("[::1]:50051"), is_loopback("0.0.0.0:1")
    (True, True, False)
    """
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start(
    authority: Authority,
    catalog: Catalog,
    routes: Mapping[str, NodeRoute],
    *,
    tls: HubTLS | None,
    address: str = "127.0.0.1:0",
    api_key_address: str | None = None,
    api_keys: ApiKeyStore | None = None,
    insecure: bool = False,
    node_timeout_s: float = DEFAULT_NODE_TIMEOUT_S,
    max_workers: int = 16,
) -> HubServer:
    """Serve the hub and return once it listens (ports bound, health ``SERVING``).

    With ``tls``: mTLS on ``address``, and server-side TLS for API keys on ``api_key_address``
    if given. Without: ``insecure=True`` is required and every address must be loopback; then
    ``address`` serves plaintext with API keys only.
    """
    if tls is None:
        if not insecure:
            raise HubError("the hub needs --tls certificates; use --insecure only on loopback")
        bad = [a for a in (address, api_key_address) if a is not None and not is_loopback(a)]
        if bad:
            raise HubError(
                f"--insecure serves plaintext, so only on loopback; {bad[0]} is not a loopback "
                "address (use 127.0.0.1)"
            )
        if api_key_address is not None:
            raise HubError("an insecure hub serves one plaintext port; drop api_key_address")
    elif insecure:
        raise HubError("give either TLS certificates or --insecure, not both")
    auth = Authenticator(tls.ca_certificate() if tls else None, api_keys)
    node_credentials = (
        None
        if tls is None
        else grpc.ssl_channel_credentials(
            root_certificates=tls.ca_pem, private_key=tls.key_pem, certificate_chain=tls.cert_pem
        )
    )
    nodes = NodeClient(node_credentials, node_timeout_s)
    firm = FirmService(authority, catalog, routes, nodes, auth)
    firm.jobs = HubJobs(authority, nodes, catalog=lambda: firm.catalog, routes=lambda: firm.routes)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    pb_grpc.add_FirmServiceServicer_to_server(firm, server)
    witnesses = HubWitnesses.open(authority, nodes, lambda: firm.routes)
    pb_grpc.add_RegulatorServiceServicer_to_server(
        RegulatorService(authority, auth, witnesses), server
    )
    pb_grpc.add_DepartmentServiceServicer_to_server(
        DepartmentService(authority, auth, firm), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*HUB_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    key_port: int | None = None
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            pair = [(tls.key_pem, tls.cert_pem)]
            mtls = grpc.ssl_server_credentials(
                pair, root_certificates=tls.ca_pem, require_client_auth=True
            )
            port = server.add_secure_port(address, mtls)
            if api_key_address is not None:
                key_port = server.add_secure_port(
                    api_key_address, grpc.ssl_server_credentials(pair)
                )
    except RuntimeError:
        port = 0
    if port == 0 or key_port == 0:
        witnesses.close()
        nodes.close()
        where = address if port == 0 else api_key_address
        raise HubError(f"cannot listen on {where}; choose another address or free the port")
    server.start()
    for name in ("", *HUB_SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return HubServer(server, port, key_port, health_servicer, nodes, firm, witnesses)
