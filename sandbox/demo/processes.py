"""The demo's child processes: started with ``sys.executable -m sandbox ...``, output to log
files, readiness from the gRPC health service, and every one stopped on exit.

Each child runs in its own session, so a Ctrl-C in the terminal reaches the demo only and the
demo stops its children in order (SIGTERM, then SIGKILL after a grace period). ``stop_all`` is
called by ``run_demo``'s ``finally``, by ``atexit`` and by the SIGTERM handler, so a failure, an
interrupt or a termination leaves no process running.

The hub and the nodes start Flower processes of their own (SuperLink, SuperNodes, ClientApp
executors) in sessions of their own, and stop them when they stop. In case one is left (its
parent killed after the grace period), ``stop_all`` notes every descendant of a child before
stopping it and kills any of those still running afterwards. Should the demo itself be killed
with SIGKILL, :func:`start_watchdog`'s process stops its children.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from sandbox.errors import SandboxError

#: Environment for every child: no telemetry, quiet gRPC C-core, Python warnings off (they go
#: to the child's log file anyway).
CHILD_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "GRPC_VERBOSITY": "ERROR",
    "PYTHONWARNINGS": "ignore",
    "PYTHONUNBUFFERED": "1",
}
#: How long a stopped child may take before it is killed.
STOP_GRACE_S = 15.0


class DemoError(SandboxError):
    """A demo step could not run; the message says which and where its log is."""


def free_port() -> int:
    """A loopback port free right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    return {**os.environ, **CHILD_ENV}


#: Stops the process groups listed in a pids file once its starter is gone (re-parented),
#: then removes a temporary state folder.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, pids, remove = int(sys.argv[1]), sys.argv[2], sys.argv[3]
while os.getppid() == parent:
    time.sleep(0.5)
def groups():
    try:
        with open(pids) as f:
            return [int(line.split()[-1]) for line in f if line.strip()]
    except OSError:
        return []
def running(pid):
    try:
        os.killpg(pid, 0)
    except OSError:
        return False
    return True
for sig in (signal.SIGTERM, signal.SIGKILL):
    for pid in groups():
        try:
            os.killpg(pid, sig)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while any(running(pid) for pid in groups()) and time.monotonic() < deadline:
        time.sleep(0.2)
if remove:
    shutil.rmtree(remove, ignore_errors=True)
"""


def start_watchdog(pids: Path, remove: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a small process that, once this process is gone without stopping its children
    (SIGKILL, a notebook kernel killed mid-exit), stops the process groups listed in ``pids``
    (SIGTERM, then SIGKILL) and removes ``remove``. It runs in a session of its own, so a
    signal to this process's group does not reach it; kill it once the children are stopped
    (and ``remove`` removed)."""
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pids), str(remove or "")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
        start_new_session=True,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Stop a watchdog from :func:`start_watchdog` (the children it guards are stopped)."""
    if watchdog is None:
        return
    if watchdog.poll() is None:
        watchdog.kill()
    watchdog.wait()


def sandbox_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def run_cli(args: Sequence[str], log: Path, timeout: float = 60.0) -> str:
    """Run ``sandbox ARGS`` to completion; its stdout is returned, stderr goes to ``log``."""
    with open(log, "ab") as err:
        done = subprocess.run(
            sandbox_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env(),
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise DemoError(
            f"`sandbox {' '.join(args[:3])} ...` failed (exit {done.returncode}); see {log}"
        )
    return done.stdout.decode("utf-8", "replace")


class Batch:
    """Several ``sandbox`` commands running at once; stderr goes to ``log``."""

    def __init__(self, commands: Sequence[Sequence[str]], log: Path) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.running = [
                (
                    list(args),
                    subprocess.Popen(
                        sandbox_cmd(*args),
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        env=child_env(),
                        start_new_session=True,
                    ),
                )
                for args in commands
            ]

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for every command; raise naming the first that failed."""
        failed = []
        try:
            for args, process in self.running:
                if process.wait(timeout=timeout) != 0:
                    failed.append(args)
        finally:
            self.kill()  # interrupted or timed out: leave nothing behind
        if failed:
            raise DemoError(f"`sandbox {' '.join(failed[0][:4])} ...` failed; see {self.log}")

    def kill(self) -> None:
        """Kill and reap any command still running."""
        for _, process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    address: str
    files: list[IO[Any]] = field(default_factory=list)


class Processes:
    """The demo's long-running children (the four nodes and the hub)."""

    def __init__(self, log_dir: Path, *, handle_sigterm: bool = True) -> None:
        """``handle_sigterm=False`` leaves SIGTERM to the host process (e.g. a notebook
        kernel); ``stop_all`` still runs from ``atexit``."""
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.batches: list[Batch] = []
        self._previous_sigterm: Any = None
        atexit.register(self.stop_all)
        if not handle_sigterm:
            return
        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread: the caller's own handling applies
            self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds run_demo, whose finally stops every child

    def run(self, commands: Sequence[Sequence[str]], log: Path) -> Batch:
        """Start short commands at once (:class:`Batch`); ``stop_all`` kills any left."""
        batch = Batch(commands, log)
        self.batches.append(batch)
        return batch

    def start(self, name: str, args: Sequence[str], address: str) -> Child:
        """Start ``sandbox ARGS`` as ``name``; its stdout and stderr go to ``<name>.log``."""
        log = self.log_dir / f"{name}.log"
        out = open(log, "ab")  # noqa: SIM115 - closed in stop_all
        process = subprocess.Popen(
            sandbox_cmd(*args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )
        child = Child(name, process, log, address, [out])
        self.children.append(child)
        self._write_pids()
        return child

    def _write_pids(self) -> None:
        lines = [f"{c.name} {c.process.pid}\n" for c in self.children]
        (self.log_dir / "pids").write_text("".join(lines), encoding="utf-8")

    def stop_all(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after ``STOP_GRACE_S``), newest first."""
        children, self.children = self.children[::-1], []
        batches, self.batches = self.batches, []
        for batch in batches:
            batch.kill()
        below = _descendants([c.process.pid for c in children if c.process.poll() is None])
        for child in children:
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                below |= _descendants([child.process.pid])
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            for f in child.files:
                f.close()
        _kill_left(below)
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        atexit.unregister(self.stop_all)

    def wait_healthy(
        self, child: Child, service: str, credentials: Any, timeout: float = 60.0
    ) -> None:
        """Block until ``child`` answers the gRPC health check with SERVING for ``service``."""
        import grpc  # type: ignore[import-untyped,unused-ignore]
        from grpc_health.v1 import (  # type: ignore[import-untyped,unused-ignore]
            health_pb2,
            health_pb2_grpc,
        )

        deadline = time.monotonic() + timeout
        with grpc.secure_channel(child.address, credentials) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if child.process.poll() is not None:
                    raise DemoError(
                        f"{child.name} stopped while starting (exit "
                        f"{child.process.returncode}); see {child.log}"
                    )
                if time.monotonic() > deadline:
                    raise DemoError(f"{child.name} did not become ready; see {child.log}")
                try:
                    reply = stub.Check(
                        health_pb2.HealthCheckRequest(service=service),
                        timeout=1.0,
                        wait_for_ready=True,
                    )
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        time.sleep(0.05)  # answering, but not this service yet
                    continue  # not listening yet: wait_for_ready waited up to 1 s
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return


def _processes() -> dict[int, tuple[int, str]]:
    """Every process on this machine: pid -> (parent pid, start time), from ``/proc``."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 19:
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(pids: Sequence[int]) -> set[tuple[int, str]]:
    """The processes below ``pids`` (children, theirs, ...), each as (pid, start time)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[tuple[int, str]] = set()
    todo = list(pids)
    while todo:
        for pid in children.get(todo.pop(), []):
            found.add((pid, table[pid][1]))
            todo.append(pid)
    return found


def _kill_left(processes: set[tuple[int, str]]) -> None:
    """SIGKILL each of ``processes`` still running (the same process: same start time)."""
    if not processes:
        return
    table = _processes()
    for pid, started in processes:
        if table.get(pid, (0, ""))[1] == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
