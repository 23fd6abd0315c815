"""Latency figures of the services benchmark: the node's own query time (a signed instruction
sent straight to ``NodeService.Execute``, as the hub sends it), a firm's end-to-end query
through the hub over TLS, many firms at once, and one CLI query as a whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import grpc  # type: ignore[import-untyped,unused-ignore]

from benchmarks.services_processes import DATASET, PURPOSE, ROOT, System, World
from policies.instructions import Instruction, sign_instruction
from policies.keys import load_signing_key
from policies.loss import PrivacyLoss
from sandbox.client import FirmClient
from sandbox.errors import ClientError
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

SQL = "SELECT COUNT(*) AS n, AVG(income) AS mean_income FROM pums"
EPSILON = 0.05


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def node_query_ms(world: World, node_port: int, n: int) -> list[float]:
    """Milliseconds per ``Execute`` of a freshly signed instruction, straight to the node over
    mTLS with the hub's certificate and the authority's key (as the hub does)."""
    from policies.authority import default_keys_dir

    key = load_signing_key(default_keys_dir(world.state), create=False)
    grant = world.grants["direct"]
    times: list[float] = []
    with grpc.secure_channel(f"127.0.0.1:{node_port}", world.hub_channel_credentials()) as ch:
        stub = pb_grpc.NodeServiceStub(ch)
        for _ in range(n):
            instruction = Instruction.for_query(
                grant, DATASET, SQL, PrivacyLoss(EPSILON), now_ms=int(time.time() * 1000)
            )
            signed = sign_instruction(key, instruction)
            message = pb.SignedInstruction(
                instruction=signed.payload, signature=signed.signature, key_id=signed.key_id
            )
            t0 = time.perf_counter()
            reply = stub.Execute(pb.ExecuteRequest(instruction=message), timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            if reply.WhichOneof("outcome") != "query_result":
                raise RuntimeError(f"the node released nothing: {reply.not_released.reason}")
    return times


def firm_query_ms(client: FirmClient, n: int) -> list[float]:
    """Milliseconds per ``FirmClient.query`` (firm -> hub -> node -> hub -> firm)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.query(SQL, EPSILON, purpose=PURPOSE)
        times.append((time.perf_counter() - t0) * 1000)
    return times


@dataclass
class Concurrent:
    """Latencies and throughput of ``clients`` firms querying at once."""

    clients: int
    queries: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    def summary(self) -> dict[str, float]:
        return {
            "clients": self.clients,
            "queries": self.queries,
            "errors": self.errors,
            "p50_ms": round(percentile(self.latencies_ms, 0.50), 2),
            "p95_ms": round(percentile(self.latencies_ms, 0.95), 2),
            "p99_ms": round(percentile(self.latencies_ms, 0.99), 2),
            "qps": round(self.queries / self.seconds, 1) if self.seconds else 0.0,
        }


def concurrent_queries(system: System, clients: int, total: int) -> Concurrent:
    """``clients`` firms (one thread and one TLS connection each, firms reused round-robin when
    there are fewer identities than clients) run ``total`` queries between them."""
    firms = system.world.firms
    connections = [
        FirmClient(system.world.profile(firms[i % len(firms)], system.hub.port))
        for i in range(clients)
    ]
    for c in connections:  # connect and warm each channel outside the timed part
        c.datasets()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))
    start = threading.Barrier(clients + 1)

    def work(client: FirmClient) -> None:
        start.wait()
        mine: list[float] = []
        bad = 0
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            t0 = time.perf_counter()
            try:
                client.query(SQL, EPSILON, purpose=PURPOSE)
                mine.append((time.perf_counter() - t0) * 1000)
            except ClientError:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=work, args=(c,)) for c in connections]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for c in connections:
        c.close()
    return Concurrent(clients, len(latencies), seconds, latencies, errors[0])


#: What a firm's CLI query does when ``sandbox query`` does not talk to the hub yet: import the
#: SDK, read the profile from SANDBOX_* variables, ask one query, print the answer as JSON.
SDK_EQUIVALENT = (
    "import json, sys\n"
    "from sandbox.client import FirmClient, Profile\n"
    "with FirmClient(Profile.from_env()) as firm:\n"
    "    answer = firm.query(sys.argv[1], float(sys.argv[2]), purpose=sys.argv[3])\n"
    "print(json.dumps(answer.values()))\n"
)


def cli_query_s(world: World, hub_port: int, firm: str) -> dict[str, float | str]:
    """Seconds for one CLI query as a whole process: the firm CLI (``sandbox query`` without
    ``--catalog``, profile from the environment) if it talks to the hub, else the SDK
    equivalent above (``python -c``), labelled in ``cli_kind``."""
    cert, key = world.cert("firm", firm)
    env = dict(os.environ)
    env.update(
        SANDBOX_HUB=f"127.0.0.1:{hub_port}",
        SANDBOX_CA=str(world.pki / "ca.pem"),
        SANDBOX_CERT=str(cert),
        SANDBOX_KEY=str(key),
        HOME=str(world.root),  # no ~/.config/sandbox/profile.toml: the profile is the env
        PYTHONPATH=str(ROOT),
    )
    env.pop("SANDBOX_API_KEY", None)
    env.pop("SANDBOX_PROFILE", None)
    commands = [
        ("sandbox query", [sys.executable, "-m", "sandbox", "query", SQL, "--epsilon",
                           str(EPSILON), "--purpose", PURPOSE, "--json"]),
        ("python -c (FirmClient, stand-in for `sandbox query`)",
         [sys.executable, "-c", SDK_EQUIVALENT, SQL, str(EPSILON), PURPOSE]),
    ]  # fmt: skip
    for kind, argv in commands:
        runs = []
        ok = True
        for _ in range(3):
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, cwd=ROOT, check=False)
            runs.append(time.perf_counter() - t0)
            if done.returncode != 0 or not _json_answer(done.stdout):
                ok = False
                break
        if ok:
            return {"cli_kind": kind, "cli_query_s": round(sorted(runs)[1], 3)}
    raise RuntimeError("neither the firm CLI nor the SDK stand-in answered a query")


def _json_answer(stdout: bytes) -> bool:
    try:
        json.loads(stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False
    return True
