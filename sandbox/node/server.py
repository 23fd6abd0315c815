"""Building and running a department node's gRPC server.

:func:`start` returns a :class:`RunningNode` (the bound port, ``stop()``); :func:`serve` starts
one and blocks until SIGINT or SIGTERM. The server

* runs TLS with the sandbox's CA as the only root and ``require_client_auth=True``, so a
  caller without a certificate from that CA fails in the handshake; every RPC then reads the
  caller from its verified certificate and serves only the role ``hub``;
* serves plaintext only when asked with ``insecure=True``, and then only on a loopback
  address (every caller is then treated as the hub; the guard's signature, nonce and spend
  checks still hold);
* registers ``sandbox.v1.NodeService``, the standard health service (``SERVING`` once
  started) and server reflection;
* reads only the manifests and opens the guard's store at start: the query engine is imported
  in the background after the server is up, and each dataset is loaded at its first query;
* opens the node's witness key and memory in its state directory (created at first start,
  :mod:`sandbox.node.witness`).

>>> loopback("127.0.0.1:7001"), loopback("[::1]:7001"), loopback("0.0.0.0:7001")
(True, True, False)
"""

from __future__ import annotations

import logging
import signal
import stat
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from grpc_health.v1 import (  # type: ignore[import-untyped,unused-ignore]
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped,unused-ignore]

from policies.errors import KeyFileError
from policies.keys import load_public_key
from sandbox.credentials import Principal, principal_from_auth_context, principal_from_certificate
from sandbox.errors import AuthenticationError, NodeServiceError
from sandbox.node.service import NodeService, abort_with
from sandbox.node.tasks import NodeTasks
from sandbox.node.witness import NodeWitness
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: The service name under which health reports the node (besides the server as a whole, "").
SERVICE_NAME = "sandbox.v1.NodeService"
#: The CA certificate's file name inside a CA directory.
CA_CERT_FILE = "ca.pem"
#: Who the caller is on a plaintext loopback node (explicit ``--insecure`` only).
INSECURE_CALLER = Principal("hub", "insecure-loopback")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def loopback(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``, IPv6 as ``[::1]:PORT``) listens on loopback only."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    return host in _LOOPBACK or host.startswith("127.")


@dataclass
class RunningNode:
    """A started node: its ``port`` (the bound one when asked for port 0), ``stop()``."""

    server: Any
    port: int
    address: str
    service: NodeService
    health: Any
    secure: bool
    started_at: float = field(default_factory=time.monotonic)
    warming: threading.Thread | None = None

    def stop(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, finish calls in flight for up to ``grace`` seconds, stop."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.service.witnessing is not None:
            self.service.witnessing.close()

    def wait(self) -> None:
        """Block until the server stops."""
        self.server.wait_for_termination()

    def __enter__(self) -> RunningNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=None)


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise NodeServiceError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def load_ca_certificate(ca: Path | str) -> x509.Certificate:
    """The CA certificate from a CA directory (its ``ca.pem``) or a certificate file."""
    path = Path(ca)
    if path.is_dir():
        path = path / CA_CERT_FILE
    try:
        return x509.load_pem_x509_certificate(_read(path, "CA certificate"))
    except ValueError:
        raise NodeServiceError(
            f"{path} is not a PEM certificate; give the CA's ca.pem (or its directory)"
        ) from None


def _authority_key(authority_key: Path | str | Ed25519PublicKey) -> Ed25519PublicKey:
    if isinstance(authority_key, Ed25519PublicKey):
        return authority_key
    try:
        return load_public_key(Path(authority_key))
    except KeyFileError as exc:
        raise NodeServiceError(
            f"{exc}; give the authority's Ed25519 public key (PEM) with --authority-key"
        ) from None


def _tls(
    ca: Path | str | None, cert: Path | str | None, key: Path | str | None
) -> tuple[Any, x509.Certificate, str]:
    """Server credentials, the CA certificate and the node's name from its certificate."""
    if ca is None or cert is None or key is None:
        raise NodeServiceError(
            "a node serves TLS: give --ca, --cert and --key (from `sandbox certs issue node "
            "NAME`), or --insecure to serve plaintext on loopback"
        )
    ca_cert = load_ca_certificate(ca)
    cert_pem = _read(cert, "node certificate")
    key_path = Path(key)
    key_pem = _read(key_path, "node private key")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise NodeServiceError(
            f"{key_path} is readable by others (mode {mode:04o}); run `chmod 600 {key_path}`"
        )
    try:
        principal = principal_from_certificate(cert_pem, issuer=ca_cert)
    except AuthenticationError as exc:
        raise NodeServiceError(f"the node certificate {cert}: {exc}") from None
    if principal.role != "node":
        raise NodeServiceError(
            f"{cert} is a {principal.role} certificate; a node serves with its own node "
            "certificate (`sandbox certs issue node NAME`)"
        )
    ca_pem = ca_cert.public_bytes(_pem())
    creds = grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )
    return creds, ca_cert, principal.name


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def _certificate_authorizer(ca_cert: x509.Certificate) -> Callable[[Any], Principal]:
    def authorize(context: Any) -> Principal:
        try:
            return principal_from_auth_context(context.auth_context(), issuer=ca_cert)
        except AuthenticationError as exc:
            abort_with(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))

    return authorize


def _insecure_authorizer(context: Any) -> Principal:
    return INSECURE_CALLER


def start(
    catalog: Path | str,
    authority_key: Path | str | Ed25519PublicKey,
    state: Path | str,
    *,
    listen: str = "127.0.0.1:0",
    ca: Path | str | None = None,
    cert: Path | str | None = None,
    key: Path | str | None = None,
    insecure: bool = False,
    name: str | None = None,
    max_workers: int = 16,
    warm: bool = True,
) -> RunningNode:
    """Start a node serving ``catalog`` on ``listen``; returns once health says SERVING.

    With TLS (the default) ``ca`` (the CA directory or its ``ca.pem``), ``cert`` and ``key``
    (the node's own, role ``node``) are required, and the node's name is the certificate's.
    ``insecure=True`` serves plaintext, on a loopback address only, named ``name`` (``node``).
    ``warm`` imports the query engine in the background once the server is up.
    """
    public_key = _authority_key(authority_key)
    if insecure:
        if not loopback(listen):
            raise NodeServiceError(
                f"--insecure serves plaintext, so only on loopback (127.0.0.1:PORT or "
                f"[::1]:PORT), not {listen}; drop --insecure to serve TLS"
            )
        if cert is not None or key is not None:
            raise NodeServiceError(
                "--insecure serves plaintext: drop --cert/--key, or drop --insecure to use them"
            )
        node = name or "node"
        authorize: Callable[[Any], Principal] = _insecure_authorizer
        creds = None
    else:
        creds, ca_cert, node = _tls(ca, cert, key)
        if name is not None and name != node:
            raise NodeServiceError(
                f"the node certificate names {node!r}, not {name!r}; the name comes from the "
                "certificate"
            )
        authorize = _certificate_authorizer(ca_cert)
    service = NodeService.open(catalog, state, public_key, node, authorize)
    service.tasks = NodeTasks(service, public_key, state)
    service.witnessing = NodeWitness.open(state, node, public_key)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="node-rpc"),
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_NodeServiceServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if creds is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, creds)
    except RuntimeError:
        port = 0
    if not port:
        raise NodeServiceError(
            f"cannot listen on {listen}; is the port in use or the address wrong?"
        )
    server.start()
    for service_name in ("", SERVICE_NAME):
        health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    host = listen.rsplit(":", 1)[0]
    running = RunningNode(server, port, f"{host}:{port}", service, health_servicer, not insecure)
    if warm:
        running.warming = threading.Thread(
            target=_warm, args=(service,), name="node-warm", daemon=True
        )
        running.warming.start()
    return running


def _warm(service: NodeService) -> None:
    try:
        service.engine()
    except Exception as exc:  # pragma: no cover - the first query reports it properly
        log.warning("the query engine could not be loaded in advance: %s", exc)


def serve(
    catalog: Path | str,
    authority_key: Path | str | Ed25519PublicKey,
    state: Path | str,
    *,
    echo: Callable[[str], None] = print,
    **options: Any,
) -> None:
    """Start a node (as :func:`start`) and block until SIGINT or SIGTERM stops it."""
    running = start(catalog, authority_key, state, **options)
    transport = "mTLS, callers with the role hub" if running.secure else "plaintext, loopback"
    datasets = ", ".join(m.name for m in running.service.catalog) or "none"
    echo(
        f"node {running.service.node} serving sandbox.v1 on {running.address} ({transport}); "
        f"datasets: {datasets}"
    )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=running.stop, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
    running.wait()
    if running.warming is not None:
        # Never exit while the engine is still being imported in the background: an
        # interpreter finalised in the middle of an extension's import can hang.
        running.warming.join(timeout=120)
    echo(f"node {running.service.node} stopped")
