"""The system as processes for the services benchmark: a CA and certificates, the authority's
state with the dataset and grants registered before the hub starts, a node's own caps, and
``sandbox node serve`` / ``sandbox hub serve`` started, health-checked, killed and restarted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
from grpc_health.v1 import (  # type: ignore[import-untyped,unused-ignore]
    health_pb2,
    health_pb2_grpc,
)

from policies.authority import Authority
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from policies.keys import public_key_pem
from sandbox.catalog import load_catalog
from sandbox.client import Profile
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.node_guard import NodeGuard
from sandbox.service import dataset_policy

ROOT = Path(__file__).resolve().parents[1]
PUMS = ROOT / "examples" / "pums"
DATASET = "pums"
PURPOSE = "labour-market research"
NODE_NAME = "node-1"


def free_port() -> int:
    """A loopback port free right now (a restarted process must come back on the same one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_grant(grant_id: str, firm: str, epsilon: float, per_use: float = 1.0) -> Grant:
    """A query grant on PUMS: ``income`` aggregate-only, ``sex`` usable in GROUP BY."""
    now = datetime.now(UTC)
    return Grant(
        grant_id=grant_id,
        firm=firm,
        datasets={
            DATASET: DatasetTerms(
                epsilon=epsilon,
                delta=0.0,
                columns={
                    "*": ColumnRule.AGGREGATE_ONLY,
                    "income": ColumnRule.AGGREGATE_ONLY,
                    "sex": ColumnRule.GROUP_BY,
                },
            )
        },
        purpose=PURPOSE,
        legal_basis="个人信息保护法 art. 13(5)",
        actions=frozenset({Action.QUERY}),
        epsilon_per_use=per_use,
        min_group_size=1,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
        approved_by="benchmark-official",
    )


@dataclass
class World:
    """Files of one benchmark run under ``root``: PKI, the hub's state, the node's state."""

    root: Path
    firms: list[str]
    grants: dict[str, Grant] = field(default_factory=dict)

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def state(self) -> Path:
        return self.root / "hub-state"

    @property
    def node_state(self) -> Path:
        return self.root / "node-state"

    @property
    def authority_key(self) -> Path:
        return self.root / "authority.pem"

    def cert(self, role: str, name: str) -> tuple[Path, Path]:
        stem = self.pki / f"{role}-{name}"
        return Path(f"{stem}.pem"), Path(f"{stem}-key.pem")

    def profile(self, firm: str, hub_port: int) -> Profile:
        cert, key = self.cert("firm", firm)
        return Profile(hub=f"127.0.0.1:{hub_port}", ca=self.pki / "ca.pem", cert=cert, key=key)

    def hub_channel_credentials(self) -> grpc.ChannelCredentials:
        cert, key = self.cert("hub", "hub-1")
        return grpc.ssl_channel_credentials(
            (self.pki / "ca.pem").read_bytes(), key.read_bytes(), cert.read_bytes()
        )


def build_world(
    root: Path,
    firms: list[str],
    *,
    grant_epsilon: float,
    dataset_epsilon: float,
    node_epsilon: float,
    per_use: float = 1.0,
) -> World:
    """PKI for hub, node and every firm; the dataset and one grant per firm in the authority's
    state (``g-FIRM``) and a grant ``g-direct`` for the node-only measurement; the node's cap."""
    world = World(root, firms)
    ca = init_ca(world.pki)
    for principal in (Principal("hub", "hub-1"), Principal("node", NODE_NAME)):
        issue_certificate(ca, principal)
    for firm in [*firms, "direct"]:
        issue_certificate(ca, Principal("firm", firm))
    catalog = load_catalog(PUMS)
    authority = Authority(world.state)
    authority.register_dataset(
        dataset_policy(catalog[DATASET], epsilon_cap=dataset_epsilon, delta_cap=1e-6)
    )
    for firm in [*firms, "direct"]:
        grant = make_grant(f"g-{firm}", firm, grant_epsilon, per_use)
        authority.create_grant(grant)
        world.grants[firm] = grant
    world.authority_key.write_bytes(public_key_pem(authority.public_key))
    guard = NodeGuard(world.node_state, authority.public_key)
    guard.set_dataset_cap(DATASET, epsilon=node_epsilon, delta=1e-6)
    return world


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    return env


@dataclass
class Proc:
    """A started service process and the command that restarts it."""

    name: str
    argv: list[str]
    port: int
    credentials: grpc.ChannelCredentials
    popen: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0

    def start(self, timeout_s: float = 30.0) -> float:
        """Start the process; return seconds from spawn to health ``SERVING``."""
        t0 = time.perf_counter()
        self.popen = subprocess.Popen(
            self.argv,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        wait_serving(self.port, self.credentials, timeout_s, self.popen)
        self.started_s = time.perf_counter() - t0
        return self.started_s

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def kill9(self) -> None:
        """``kill -9`` the process (no chance to clean up) and reap it."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def rss_mb(self) -> float:
        """Resident memory of the process, from ``/proc`` (MiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def wait_serving(
    port: int,
    credentials: grpc.ChannelCredentials,
    timeout_s: float,
    popen: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll the standard health service over mTLS until it answers ``SERVING``."""
    deadline = time.perf_counter() + timeout_s
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if popen is not None and popen.poll() is not None:
                err = popen.stderr.read().decode() if popen.stderr else ""
                raise RuntimeError(f"process on port {port} exited: {err.strip()[-500:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no SERVING on port {port} within {timeout_s} s")
            time.sleep(0.005)


def node_proc(world: World, port: int) -> Proc:
    cert, key = world.cert("node", NODE_NAME)
    argv = [sys.executable, "-m", "sandbox", "node", "serve", "--catalog", str(PUMS),
            "--authority-key", str(world.authority_key), "--state", str(world.node_state),
            "--ca", str(world.pki), "--cert", str(cert), "--key", str(key),
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    return Proc("node", argv, port, world.hub_channel_credentials())


def hub_proc(world: World, port: int, node_port: int) -> Proc:
    cert, key = world.cert("hub", "hub-1")
    argv = [sys.executable, "-m", "sandbox", "hub", "serve", "--state", str(world.state),
            "--catalog", str(PUMS), "--ca", str(world.pki), "--cert", str(cert),
            "--key", str(key), "--listen", f"127.0.0.1:{port}",
            "--route", f"{DATASET}={NODE_NAME}@127.0.0.1:{node_port}"]  # fmt: skip
    return Proc("hub", argv, port, world.hub_channel_credentials())


@dataclass
class System:
    """A node and a hub process serving one world."""

    world: World
    node: Proc
    hub: Proc

    def stop(self) -> None:
        self.hub.stop()
        self.node.stop()


def start_system(world: World) -> System:
    node = node_proc(world, free_port())
    node.start()
    hub = hub_proc(world, free_port(), node.port)
    hub.start()
    return System(world, node, hub)
