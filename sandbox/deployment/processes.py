"""Real Flower deployment processes on one machine or across machines: a SuperLink with TLS
and SuperNode authentication, SuperNodes registered by their keys, runs started with
``flwr run`` from the sandbox's FAB.

Everything a process needs is written under one working directory:

* ``tls/``: the SuperLink's certificate, issued by the sandbox CA
  (:mod:`sandbox.credentials.ca`) with SANs for the addresses it serves (127.0.0.1 and
  localhost by default), and the CA certificate every SuperNode and ``flwr`` pins;
* ``flwr-home/config.toml``: the ``flwr`` CLI's SuperLink connection (address, CA);
* ``keys/<name>``, ``keys/<name>.pub``: a SuperNode's EC P-256 key (OpenSSH format), registered
  with ``flwr supernode register``; ``keys/<name>.superexec``: the secret a SuperNode and its
  ClientApp executor share (:mod:`sandbox.deployment.executor`);
* ``logs/``: each process's output (Flower's own output never reaches the terminal).

Runtime dependency installation is disabled everywhere: the apps run in the environment where
the sandbox is installed. ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` (how often a SuperExec looks for
an app to start, 1 s by default) is :data:`TASK_POLL_INTERVAL_S` for a SuperNode in subprocess
isolation (one app per message) and :data:`SUPERLINK_TASK_POLL_INTERVAL_S` for the SuperLink (one
ServerApp per job; a faster poll costs an idle hub CPU for nothing).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.errors import FederationError

__all__ = [
    "FAB_DIR",
    "ISOLATION_MODES",
    "DeploymentError",
    "Federation",
    "SuperNode",
    "free_port",
    "node_key",
    "write_node_key",
]

#: The sandbox's FAB (pyproject.toml + entry points).
FAB_DIR = Path(__file__).parent / "fab"
#: How often each SuperExec polls for an app to start (Flower's default: 1.0 s).
TASK_POLL_INTERVAL_S = 0.02
SUPERLINK_TASK_POLL_INTERVAL_S = 0.25
#: The SuperLink connection name in the ``flwr`` CLI's config.
CONNECTION = "sandbox"


class DeploymentError(FederationError):
    """A Flower deployment process could not be started, registered or reached."""


_log = logging.getLogger(__name__)


def _json_node_id(out: str) -> int | None:
    """The ``node-id`` of ``flwr supernode register --format json``'s output, if it has one.

    >>> _json_node_id('{"success": true, "node-id": 1234}')
    1234
    >>> _json_node_id("not json") is None
    True
    """
    try:
        value = json.loads(out).get("node-id")
    except (ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else None


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A Flower executable next to this interpreter (the sandbox's environment)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _guarded() -> tuple[str, ...]:
    """The command prefix that runs a Flower process which stops when this one is gone
    (:mod:`sandbox.deployment.child`)."""
    return (sys.executable, "-m", "sandbox.deployment.child", "--parent-pid", str(os.getpid()))


def node_key(state: Path, dataset: str) -> tuple[Path, Path]:
    """A department's SuperNode key for ``dataset`` (private, public), made at first use under
    the node's state directory (``STATE/flower/keys``). The node reports the public key in
    ``ReportMetadata``; the hub registers it with its SuperLink when the dataset is registered
    (``sandbox hub serve --flower-node DATASET=FILE`` overrides it)."""
    directory = Path(state) / "flower" / "keys"
    private, public = directory / dataset, directory / f"{dataset}.pub"
    if private.exists() and public.exists():
        return private, public
    return write_node_key(directory, dataset)


def write_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A new EC P-256 SuperNode key, ``<name>`` (private, 0600) and ``<name>.pub``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / name, directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


#: Longest wait before a SuperNode that exited is started again.
MAX_RESTART_DELAY_S = 10.0
#: A SuperNode's ClientApp runs: ``process`` (the long-lived executor,
#: :mod:`sandbox.deployment.executor`) or ``subprocess`` (Flower's default: a new
#: ``flwr-clientapp`` process per message, with the app's code from the run's FAB).
ISOLATION_MODES = ("process", "subprocess")


class SuperNode:
    """A running SuperNode process, restarted when it exits until :meth:`stop` (for example
    refused while its key is not registered yet, or after a SuperLink restart), and, in
    process isolation, its ClientApp executor."""

    def __init__(
        self,
        name: str,
        key: Path,
        start: Callable[[], subprocess.Popen[bytes]],
        start_executor: Callable[[], subprocess.Popen[bytes]] | None = None,
        *,
        restart: bool = True,
    ) -> None:
        self.name, self.key = name, key
        self._start, self._start_executor = start, start_executor
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0
        self._since = time.monotonic()
        self.executor = start_executor() if start_executor is not None else None
        self.process = start()
        self._watch: threading.Thread | None = None
        if restart:
            self._watch = threading.Thread(
                target=self._supervise, name=f"supernode-{name}", daemon=True
            )
            self._watch.start()

    def _supervise(self) -> None:
        delay = 0.5
        while not self._stopped.is_set():
            with self._lock:
                process, executor = self.process, self.executor
            if process.poll() is None and (executor is None or executor.poll() is None):
                if self._stopped.wait(0.5):
                    return
                delay = 0.5 if time.monotonic() - self._since > 30 else delay
                continue
            if self._stopped.wait(delay):
                return
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            with self._lock:
                if self._stopped.is_set():
                    return
                if self.process.poll() is not None:
                    self.process = self._start()
                    self.restarts += 1
                if self.executor is not None and self.executor.poll() is not None:
                    assert self._start_executor is not None
                    self.executor = self._start_executor()
                self._since = time.monotonic()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the SuperNode (and the SuperExec or executor it runs with); no restart."""
        self._stopped.set()
        with self._lock:
            _stop(self.process, sig)
            if self.executor is not None:
                _stop(self.executor, sig)


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Federation:
    """A SuperLink and its SuperNodes, all with their state under ``workdir``.

    ``hosts`` are the names the SuperLink's certificate covers (its SANs), ``bind_host`` the
    address it listens on. On a department's machine, ``superlink`` is the hub's SuperLink
    (``HOST:PORT``) the SuperNodes connect to; no SuperLink is started there.
    """

    workdir: Path
    port: int = 0
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    bind_host: str = "127.0.0.1"
    superlink_address: str | None = None
    env_extra: Mapping[str, str] = field(default_factory=dict)
    #: Keep the SuperLink's state in ``workdir/superlink.db`` (runs, registered keys) rather
    #: than in memory. Every write is a durable SQLite transaction: with it, a round takes
    #: about 1 s longer on 4 nodes. The hub registers the departments' keys at every start,
    #: so it runs its SuperLink in memory.
    database: bool = False
    #: The command that starts a SuperNode; by default Flower's ``flower-supernode`` through
    #: :mod:`sandbox.deployment.child`, which stops it when this process is gone.
    supernode_command: tuple[str, ...] = ()
    superlink: subprocess.Popen[bytes] | None = None
    nodes: dict[str, SuperNode] = field(default_factory=dict)
    #: The SuperNode keys this SuperLink has accepted (name -> OpenSSH public key bytes).
    registered: dict[str, bytes] = field(default_factory=dict)
    #: The SuperLink's node id of each key registered here, by SuperNode name.
    node_ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        for sub in ("tls", "keys", "logs", "flwr-home", "runs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.port:
            self.port = free_port()

    # --- paths and environment ---------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.superlink_address is not None:
            return self.superlink_address
        return f"127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.workdir / "tls" / "ca.pem"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FLWR_HOME": str(self.workdir / "flwr-home"),
                "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(TASK_POLL_INTERVAL_S),
                "FLWR_TELEMETRY_ENABLED": "0",
                "FLWR_DISABLE_UPDATE_CHECK": "1",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            }
        )
        env.update(self.env_extra)
        return env

    def _log(self, name: str) -> int:
        return os.open(
            self.workdir / "logs" / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )

    def _popen(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        fd = self._log(name)
        try:
            return subprocess.Popen(
                argv,
                stdout=fd,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env(), **(env or {})},
                cwd=self.workdir,
                start_new_session=True,  # its own process group: stopped with its children
            )
        finally:
            os.close(fd)

    def _cli(self, argv: list[str], timeout: float = 60) -> str:
        done = subprocess.run(
            [_bin("flwr"), *argv],
            capture_output=True,
            env=self.env(),
            cwd=self.workdir,
            timeout=timeout,
            check=False,
        )
        out = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace")
            raise DeploymentError(
                f"`flwr {argv[0]} {argv[1] if len(argv) > 1 else ''}` failed: "
                f"{(out + err).strip()[-800:]}"
            )
        return out

    # --- TLS -----------------------------------------------------------------------------------

    def issue_tls(self, ca_dir: Path | None = None) -> None:
        """Issue the SuperLink's certificate from the sandbox CA in ``ca_dir`` (a new CA under
        ``workdir/ca`` if None) and write the flwr CLI's connection config."""
        from sandbox.credentials.ca import init_ca, issue_certificate, load_ca
        from sandbox.credentials.identity import Principal

        tls = self.workdir / "tls"
        if ca_dir is None:
            ca_dir = self.workdir / "ca"
            ca = load_ca(ca_dir) if (ca_dir / "ca-key.pem").exists() else init_ca(ca_dir)
        else:
            ca = load_ca(ca_dir)
        for old in tls.glob("hub-flower-superlink*"):
            old.unlink()
        issued = issue_certificate(
            ca, Principal("hub", "flower-superlink"), out_dir=tls, hosts=self.hosts
        )
        self.ca_cert.write_bytes(ca.cert_pem())
        self.cert, self.key = issued.cert_path, issued.key_path
        (self.workdir / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{self.address}"\nroot-certificates = "{self.ca_cert}"\n',
            encoding="utf-8",
        )

    # --- processes -----------------------------------------------------------------------------

    def start_superlink(self, timeout: float = 60) -> None:
        """Start ``flower-superlink`` with TLS, SuperNode authentication on and runtime
        dependency installation off; returns once its API answers."""
        if not hasattr(self, "cert"):
            self.issue_tls()
        argv = [
            *_guarded(),
            "superlink",
            "--ssl-certfile", str(self.cert),
            "--ssl-keyfile", str(self.key),
            "--ssl-ca-certfile", str(self.ca_cert),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host", self.bind_host,
            "--port", str(self.port),
            *(("--database", str(self.workdir / "superlink.db")) if self.database else ()),
        ]  # fmt: skip
        poll = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(SUPERLINK_TASK_POLL_INTERVAL_S)}
        self.superlink = self._popen("superlink", argv, poll)
        deadline = time.monotonic() + timeout
        while True:
            if self.superlink.poll() is not None:
                raise DeploymentError(
                    f"flower-superlink exited ({self.superlink.returncode}); see "
                    f"{self.workdir / 'logs' / 'superlink.log'}"
                )
            try:
                out = self._cli(["supernode", "list", CONNECTION, "--format", "json"], timeout=30)
                if json.loads(out).get("success", True) is not False:  # exit 0 when unreachable
                    return
                raise DeploymentError(f"the SuperLink does not answer yet: {out.strip()[-400:]}")
            except (DeploymentError, ValueError, AttributeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def register(self, name: str) -> Path:
        """Make a key for SuperNode ``name`` and register it with the SuperLink; returns the
        private key's path."""
        private, public = write_node_key(self.workdir / "keys", name)
        self.register_key(name, public)
        return private

    def register_key(self, name: str, public: Path) -> None:
        """Register SuperNode ``name``'s public key (OpenSSH format) with the SuperLink; a key
        registered before (the SuperLink's database persists) is accepted as it is.

        A different key registered earlier under ``name`` by this object is unregistered once
        the new one is in: the SuperNode holding the old key is refused from then on (a
        connected one is told so by its next Fleet call and stops), and a key a department
        replaced, perhaps because it leaked, opens nothing."""
        key = public.read_bytes()
        old = self.node_ids.get(name) if self.registered.get(name) != key else None
        for attempt in range(20):  # the SuperLink may still be finishing its start
            try:
                out = self._cli(
                    ["supernode", "register", str(public), CONNECTION, "--name", name]
                    + ["--format", "json"]
                )
                node_id = _json_node_id(out)
                break
            except DeploymentError as exc:
                text = str(exc).lower()
                if "already" in text or "exists" in text:
                    node_id = None
                    break
                if "unavailable" not in text or attempt == 19:
                    raise
                time.sleep(0.25)
        self.registered[name] = key
        if node_id is not None:
            self.node_ids[name] = node_id
        if old is not None and old != node_id:
            self._cli(["supernode", "unregister", str(old), CONNECTION, "--format", "json"])
            _log.info("SuperNode %s: the replaced key (node %d) is unregistered", name, old)

    def start_supernode(
        self,
        name: str,
        node_config: Mapping[str, str | int | float],
        *,
        key: Path | None = None,
        runtime_port: int | None = None,
        isolation: str = "process",
        restart: bool = True,
    ) -> SuperNode:
        """Start a SuperNode for dataset ``name`` with ``node_config``; ``key`` defaults to a
        newly registered one. With ``isolation="process"`` (the default) the SuperNode's
        ClientApp tasks go to a long-lived executor (:mod:`sandbox.deployment.executor`)
        started beside it, which holds the SuperExec secret; with ``"subprocess"``, Flower's
        SuperExec starts a ``flwr-clientapp`` process per message. ``restart`` starts the
        SuperNode again whenever it exits, until :meth:`SuperNode.stop`."""
        if isolation not in ISOLATION_MODES:
            raise DeploymentError(f"isolation is one of {ISOLATION_MODES}, not {isolation!r}")
        key = key if key is not None else self.register(name)
        config = " ".join(f"{k}={json.dumps(v)}" for k, v in node_config.items())
        port = runtime_port or free_port()
        command = self.supernode_command or (*_guarded(), "supernode")
        argv = [
            *command,
            "--superlink", self.address,
            "--root-certificates", str(self.ca_cert),
            "--auth-supernode-private-key", str(key),
            "--node-config", config,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--isolation", isolation,
        ]  # fmt: skip
        start_executor = None
        if isolation == "process":
            secret = self.workdir / "keys" / f"{name}.superexec"
            if not secret.exists():
                fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(secrets.token_bytes(32))
            argv += ["--superexec-auth-secret-file", str(secret)]
            executor_argv = [
                sys.executable, "-m", "sandbox.deployment.executor",
                "--runtime-api-address", f"127.0.0.1:{port}",
                "--superexec-auth-secret-file", str(secret),
                "--parent-pid", str(os.getpid()),
            ]  # fmt: skip

            def start_executor() -> subprocess.Popen[bytes]:
                return self._popen(f"executor-{name}", executor_argv)

        node = SuperNode(
            name,
            key,
            lambda: self._popen(f"supernode-{name}", argv),
            start_executor,
            restart=restart,
        )
        self.nodes[name] = node
        return node

    def connected(self) -> int:
        """How many SuperNodes the SuperLink sees online."""
        out = self._cli(["supernode", "list", CONNECTION, "--format", "json"])
        nodes = json.loads(out).get("nodes", [])
        return sum(1 for n in nodes if str(n.get("status", "")).lower() == "online")

    def wait_connected(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.connected() < count:
            if time.monotonic() > deadline:
                raise DeploymentError(f"fewer than {count} SuperNode(s) connected in {timeout} s")
            time.sleep(0.2)

    def run(self, run_config: Mapping[str, str]) -> int:
        """Start the FAB with ``flwr run`` and ``run_config``; returns the run id."""
        config = " ".join(f"{k}={json.dumps(v)}" for k, v in run_config.items())
        out = self._cli(
            ["run", str(FAB_DIR), CONNECTION, "--run-config", config, "--format", "json"]
        )
        try:
            return int(json.loads(out)["run-id"])
        except (ValueError, KeyError, TypeError):
            raise DeploymentError(f"flwr run gave no run id: {out.strip()[-400:]}") from None

    def stop(self) -> None:
        """Stop every SuperNode, then the SuperLink."""
        for node in list(self.nodes.values()):
            node.stop()
        self.nodes.clear()
        if self.superlink is not None:
            _stop(self.superlink)
            self.superlink = None

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
