"""The departments' way into the hub's SuperLink: a TLS reverse proxy that serves the Fleet API
only.

Flower's SuperLink serves all its HTTP APIs on one address: ``/v1/control`` (``flwr run``,
``flwr supernode register``: whoever can call it starts the ServerApp code of any FAB on the
hub's machine), ``/v1/fleet`` (the SuperNodes), ``/v1/runtime`` (the ServerApp), health and
documentation routes. Departments need the Fleet API alone. So the hub runs its SuperLink on
the loopback interface at a private port (its own ``flwr`` calls use that) and serves the
departments' address with :class:`FleetProxy`, in the hub's process:

* it forwards ``POST`` to one of the Fleet routes a SuperNode calls (:data:`FLEET_PATHS`) and
  answers 403 to any other method or path without forwarding it; the upstream request is
  built from the allowed path itself (never the caller's raw path, no query string);
* it passes the body and the headers Flower needs (content type, ``flwr-*``: the SuperNode's
  public key, signed timestamp and signature, runtime version) intact and drops the rest (a
  caller's ``Host``, ``X-Forwarded-*`` and hop-by-hop headers); it tells the SuperLink the
  caller's address in ``X-Forwarded-For``. A request without the SuperNode authentication
  headers is refused (401) before it is forwarded;
* it adds no trust: the SuperLink still authenticates each SuperNode by the signature over its
  registered key; the proxy only narrows what reaches the SuperLink;
* TLS with the SuperLink's own certificate (issued from the sandbox CA, the CA every SuperNode
  pins); towards the SuperLink it verifies the same certificate against the same CA.

HTTP/1.1 on both sides, as Flower's SuperNode client (``httpx``, no HTTP/2) speaks it. Bodies
are streamed through in both directions, not held by the proxy; a request must declare its
``Content-Length``, at most :data:`MAX_BODY_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sandbox.deployment.processes import DeploymentError

__all__ = ["FLEET_PATHS", "MAX_BODY_BYTES", "FleetProxy"]

_log = logging.getLogger(__name__)

#: The Fleet API routes a SuperNode calls (flwr 1.42 ``flwr/supernode/fleet_http_client.py``,
#: served by ``flwr/superlink/routers/fleet/router.py``); nothing else is forwarded.
FLEET_PATHS: frozenset[str] = frozenset(
    f"/v1/fleet/{name}"
    for name in (
        "register-node",
        "activate-node",
        "deactivate-node",
        "unregister-node",
        "send-node-heartbeat",
        "pull-messages",
        "push-messages",
        "get-run",
        "get-fab",
        "push-object",
        "pull-object",
        "confirm-message-received",
    )
)
#: The largest request body forwarded. Flower sends a model's arrays in chunks of 5 MiB
#: (``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE``), one object per ``push-object`` call.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Request headers passed on besides every ``flwr-*`` header.
_REQUEST_HEADERS = frozenset({"content-type", "content-length", "accept", "accept-encoding"})
#: The headers of SuperNode authentication (flwr ``FLEET_HTTP_PUBLIC_KEY_HEADER``,
#: ``FLEET_HTTP_SIGNATURE_HEADER``, ``TIMESTAMP_HEADER``).
_AUTH_HEADERS = ("flwr-public-key", "flwr-signature", "flwr-timestamp")
#: Response headers not passed back (hop-by-hop, or set by the proxy's own server).
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"server",
        b"date",
    }
)

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FleetProxy:
    """Serve ``listen`` (``HOST:PORT``; port 0 picks one) with TLS (``certfile``, ``keyfile``)
    and forward the Fleet API to the SuperLink at ``upstream`` (``HOST:PORT``, verified
    against ``ca_cert``). :meth:`start` returns once it listens; :meth:`stop` stops it.
    ``forwarded`` and ``refused`` count the requests since the start."""

    def __init__(
        self,
        listen: str,
        upstream: str,
        *,
        certfile: Path,
        keyfile: Path,
        ca_cert: Path,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise DeploymentError(f"the Fleet proxy listens on HOST:PORT, not {listen!r}")
        self.host, self.port = host.strip("[]"), int(port)
        self.upstream = upstream
        self.certfile, self.keyfile, self.ca_cert = certfile, keyfile, ca_cert
        self.max_body = max_body
        self.forwarded = 0
        self.refused = 0
        self._client: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """The address the departments' SuperNodes connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # --- the ASGI application ------------------------------------------------------------------

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":  # lifespan is off, websockets are not served
            return
        method, path = scope["method"], scope["path"]
        client = scope.get("client") or ("?", 0)
        headers = [(k.decode("latin-1").lower(), v) for k, v in scope["headers"]]
        if method != "POST" or path not in FLEET_PATHS:
            self.refused += 1
            _log.warning("Fleet proxy: refused %s %s from %s", method, path[:200], client[0])
            await _answer(send, 403, b"only the Flower Fleet API is served here\n")
            return
        names = {k for k, _ in headers}
        if not all(h in names for h in _AUTH_HEADERS):
            self.refused += 1
            _log.warning("Fleet proxy: refused %s from %s without node auth", path, client[0])
            await _answer(send, 401, b"SuperNode authentication required\n")
            return
        length = dict(headers).get("content-length", b"")
        if not length.isdigit():
            self.refused += 1
            await _answer(send, 411, b"a Content-Length is required\n")
            return
        if int(length) > self.max_body:
            self.refused += 1
            await _answer(send, 413, b"request body too large\n")
            return
        forward = [
            (k.encode("latin-1"), v)
            for k, v in headers
            if k in _REQUEST_HEADERS or k.startswith("flwr-")
        ]
        forward += [
            (b"x-forwarded-for", str(client[0]).encode("latin-1")),
            (b"x-forwarded-proto", b"https"),
        ]
        await self._forward(path, forward, _body(receive), send)

    async def _forward(
        self,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes],
        send: _Send,
    ) -> None:
        assert self._client is not None
        request = self._client.build_request("POST", path, content=body, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except _ClientGone:
            return
        except httpx.HTTPError as exc:
            _log.warning("Fleet proxy: the SuperLink did not answer %s: %s", path, exc)
            await _answer(send, 502, b"the SuperLink did not answer\n")
            return
        self.forwarded += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k, v)
                        for k, v in response.headers.raw
                        if k.lower() not in _DROPPED_RESPONSE_HEADERS
                    ],
                }
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> FleetProxy:
        """Bind ``listen`` and serve in a thread; returns once the proxy accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a response's headers and body leave in separate
        # writes, and Nagle's algorithm would hold the body for the caller's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise DeploymentError(
                f"the Fleet proxy cannot listen on {self.address}: {exc}"
            ) from None
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self,
            log_level="warning",
            access_log=False,
            ssl_certfile=str(self.certfile),
            ssl_keyfile=str(self.keyfile),
            lifespan="off",
            ws="none",
            http="h11",
            proxy_headers=False,  # the caller's X-Forwarded-* are never believed
            server_header=False,
        )
        server = uvicorn.Server(config)
        upstream_tls = ssl.create_default_context(cafile=str(self.ca_cert))

        async def serve() -> None:
            self._client = httpx.AsyncClient(
                base_url=f"https://{self.upstream}",
                verify=upstream_tls,
                timeout=httpx.Timeout(300.0, connect=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                follow_redirects=False,
                trust_env=False,
            )
            try:
                await server.serve(sockets=[sock])
            finally:
                await self._client.aclose()

        thread = threading.Thread(
            target=lambda: asyncio.run(serve()), name="fleet-proxy", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        waited = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if server.started or not thread.is_alive():
                break
            waited.wait(0.02)
        if not server.started:
            self.stop()
            raise DeploymentError(f"the Fleet proxy did not start on {self.address}")
        _log.info("Fleet proxy on %s -> SuperLink %s", self.address, self.upstream)
        return self

    def stop(self) -> None:
        """Stop serving (open connections are closed)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None


class _ClientGone(Exception):
    """The caller disconnected before its request body was complete."""


async def _body(receive: _Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives (uvicorn delivers no more than its Content-Length)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def _answer(send: _Send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text, "more_body": False})
