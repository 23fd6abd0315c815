"""The departments reach only the SuperLink's Fleet API: ``start_superlink`` runs the SuperLink
on a private loopback port and serves the departments' address through the Fleet proxy. Every
Control, Runtime, health and documentation route Flower serves is refused at the proxy and the
SuperLink's own log shows none of those requests; a Fleet call reaches the SuperLink, which
still authenticates it. With ``-m deployment``: SuperNodes connect through the proxy and a
two-node job runs through it, while ``flwr`` pointed at the proxy can neither list the
SuperNodes nor start a run."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from sandbox.credentials.ca import init_ca
from sandbox.deployment.fleet_proxy import FLEET_PATHS, MAX_BODY_BYTES
from sandbox.deployment.processes import (
    CONNECTION,
    FAB_DIR,
    Federation,
    free_port,
    write_node_key,
)
from sandbox.deployment.runner import run_deployed
from sandbox.deployment.serve import HubSuperLink, start_superlink

from .departments import GRANT, Department, grant
from .test_deployment import NODES, _spec


def _flower_routes() -> set[str]:
    """Every route of Flower's SuperLink app but the Fleet API's."""
    from flwr.supercore.routers import health
    from flwr.supercore.routers.runtime import create_runtime_router, responses_router
    from flwr.superlink.routers.control import router as control

    app = FastAPI()
    for router in (health.router, control, create_runtime_router("SuperLink"), responses_router):
        app.include_router(router)
    paths = (getattr(context.route, "path", None) for context in iter_route_contexts(app.routes))
    return {path for path in paths if path is not None}


def test_the_proxy_forwards_exactly_the_fleet_routes_flower_serves() -> None:
    from flwr.superlink.routers.fleet.router import router as fleet

    assert {r.path for r in fleet.routes if hasattr(r, "path")} == FLEET_PATHS
    assert not FLEET_PATHS & set(_flower_routes())


@dataclass
class _Hub:
    root: Path
    superlink: HubSuperLink
    nodes: Federation

    @property
    def log(self) -> str:
        return (self.superlink.workdir / "logs" / "superlink.log").read_text("utf-8", "replace")

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """A raw HTTPS request to the proxy (the path is sent as it is, not normalised)."""
        host, _, port = self.superlink.fleet_address.rpartition(":")
        tls = ssl.create_default_context(cafile=str(self.superlink.ca_cert))
        conn = http.client.HTTPSConnection(host, int(port), context=tls, timeout=30)
        try:
            body = b"\x08\x01" if method == "POST" else None
            conn.request(
                method,
                path,
                body=body,
                headers={"content-type": "application/protobuf", **(headers or {})},
            )
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def add_department(self, name: str, offset: int) -> Department:
        """A department whose SuperNode connects through the proxy."""
        dept = Department.create(self.root / name, name, offset, _AUTHORITY, _GRANT)
        private, public = write_node_key(self.root / "keys", name)
        self.superlink.register_key(name, public)
        self.nodes.start_supernode(name, dept.node_config, key=private)
        return dept


_AUTHORITY = Ed25519PrivateKey.generate()
_GRANT = grant(NODES)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Hub]:
    root = tmp_path_factory.mktemp("proxy")
    init_ca(root / "ca")
    superlink = start_superlink(root / "hub", root / "ca", f"127.0.0.1:{free_port()}", {})
    nodes = Federation(root / "departments", superlink_address=superlink.fleet_address)
    shutil.copyfile(superlink.ca_cert, nodes.ca_cert)
    try:
        yield _Hub(root, superlink, nodes)
    finally:
        nodes.stop()
        superlink.stop()


def test_the_superlink_listens_on_loopback_and_the_departments_reach_the_proxy(
    hub: _Hub,
) -> None:
    proxy = hub.superlink.proxy
    assert proxy is not None and hub.superlink.fleet_address == proxy.address
    assert hub.superlink.bind_host == "127.0.0.1" and hub.superlink.port != proxy.port
    assert "running on https://127.0.0.1:" in hub.log


def test_control_runtime_and_other_routes_are_refused_and_never_reach_the_superlink(
    hub: _Hub,
) -> None:
    proxy = hub.superlink.proxy
    assert proxy is not None
    control_before = hub.log.count("/v1/control/")
    refused = proxy.refused
    marker = f"probe{time.monotonic_ns()}"
    paths = sorted(_flower_routes())
    assert "/v1/control/start-run" in paths and "/v1/runtime/pull-messages" in paths
    for path in paths:
        for method in ("POST", "GET"):
            status, _ = hub.request(method, f"{path}?{marker}")
            assert status == 403, (method, path, status)
    # Fleet paths with another method, traversal and other spellings.
    for method, path in [
        ("GET", "/v1/fleet/pull-messages"),
        ("PUT", "/v1/fleet/push-messages"),
        ("POST", f"/v1/fleet/../control/start-run?{marker}"),
        ("POST", f"/v1/fleet/%2e%2e/control/list-nodes?{marker}"),
        ("POST", f"/v1/fleet/activate-node/../../control/list-runs?{marker}"),
        ("POST", f"//v1/fleet/get-run?{marker}"),
        ("POST", f"/v1/fleet/get-run/?{marker}"),
        ("POST", f"/V1/FLEET/get-run?{marker}"),
    ]:
        status, _ = hub.request(method, path)
        assert status == 403, (method, path, status)
    # A Fleet call without SuperNode authentication headers is refused before forwarding.
    status, _ = hub.request("POST", "/v1/fleet/get-run")
    assert status == 401
    assert proxy.refused - refused == 2 * len(paths) + 9
    time.sleep(0.5)  # the SuperLink's log is written by another process
    log = hub.log
    assert marker not in log
    assert log.count("/v1/control/") == control_before
    assert "/v1/runtime/" not in log and "/docs" not in log and "/health" not in log


def test_a_fleet_call_reaches_the_superlink_which_still_authenticates_it(hub: _Hub) -> None:
    """Forwarded with the caller's address as the proxy saw it (a caller's own forwarding
    headers are not believed); the SuperLink refuses the bad signature."""
    proxy = hub.superlink.proxy
    assert proxy is not None
    forwarded = proxy.forwarded
    status, _ = hub.request(
        "POST",
        "/v1/fleet/get-run",
        {
            "flwr-public-key": "AAAA",
            "flwr-signature": "AAAA",
            "flwr-timestamp": "2000-01-01T00:00:00+00:00",
            "x-forwarded-for": "203.0.113.9",
            "forwarded": "for=203.0.113.9",
        },
    )
    assert status == 401
    assert proxy.forwarded == forwarded + 1
    time.sleep(0.5)
    log = hub.log
    assert '"POST /v1/fleet/get-run HTTP/1.1" 401' in log
    assert "203.0.113.9" not in log


def test_a_body_over_the_limit_is_refused_before_it_is_read(hub: _Hub) -> None:
    proxy = hub.superlink.proxy
    assert proxy is not None
    forwarded = proxy.forwarded
    auth = {"flwr-public-key": "AAAA", "flwr-signature": "AAAA", "flwr-timestamp": "x"}
    status, _ = hub.request(
        "POST", "/v1/fleet/push-object", {**auth, "content-length": str(MAX_BODY_BYTES + 1)}
    )
    assert status == 413 and proxy.forwarded == forwarded


def test_a_forwarded_call_adds_no_nagle_delay(hub: _Hub) -> None:
    """A response's headers and body leave the proxy in separate writes; without TCP_NODELAY
    on its connections each call waited ~40 ms for the caller's delayed ACK."""
    import httpx

    host = hub.superlink.fleet_address
    headers = {"content-type": "application/protobuf", "flwr-public-key": "AAAA"}
    headers |= {"flwr-signature": "AAAA", "flwr-timestamp": "x"}
    with httpx.Client(verify=str(hub.superlink.ca_cert)) as client:
        times = []
        for _ in range(21):
            start = time.perf_counter()
            client.post(f"https://{host}/v1/fleet/get-run", content=b"\x08\x01", headers=headers)
            times.append(time.perf_counter() - start)
    assert sorted(times)[10] < 0.03, times


def _flwr_refused(hub: _Hub, argv: list[str]) -> str:
    """Run ``flwr`` against the proxy's address; returns its error message."""
    outsider = Federation(hub.root / "outsider", superlink_address=hub.superlink.fleet_address)
    shutil.copyfile(hub.superlink.ca_cert, outsider.ca_cert)
    (outsider.workdir / "flwr-home" / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{outsider.address}"\nroot-certificates = "{outsider.ca_cert}"\n',
        encoding="utf-8",
    )
    out = json.loads(outsider._cli([*argv, CONNECTION, "--format", "json"]))
    assert out["success"] is False
    return str(out["error-message"])


@pytest.mark.deployment
def test_supernodes_connect_and_a_job_runs_through_the_proxy_flwr_is_refused(
    hub: _Hub,
) -> None:
    """The two-node job of the deployment tests, both SuperNodes behind the proxy."""
    depts = {name: hub.add_department(name, i) for i, name in enumerate(NODES)}
    hub.superlink.wait_connected(len(NODES), timeout=120)
    assert "/v1/fleet/activate-node" in hub.log
    control_before = hub.log.count("/v1/control/")
    assert "403 Forbidden" in _flwr_refused(hub, ["supernode", "list"])
    assert "403 Forbidden" in _flwr_refused(hub, ["run", str(FAB_DIR)])
    assert hub.log.count("/v1/control/") == control_before
    assert hub.superlink.proxy is not None
    forwarded = hub.superlink.proxy.forwarded
    spec = _spec(rounds=2)
    signed = {name: dept.accept(spec) for name, dept in depts.items()}
    result = run_deployed(hub.superlink, spec, dict.fromkeys(NODES, GRANT), signed)
    assert result.status == "completed", result.abort_reason
    assert [r.round for r in result.rounds] == [1, 2]
    assert sorted(result.spent) == sorted(NODES)
    assert hub.superlink.proxy.forwarded > forwarded  # the rounds' messages went through it
