"""The embedded deployment as a small API, for notebooks and scripts: the hub and the four
department nodes as separate processes on loopback over mutual TLS, a certificate for every
party, and a client for each role.

>>> from sandbox.demo.deployment import start            # doctest: +SKIP
>>> with start() as d:                                   # doctest: +SKIP
...     with d.firm() as bank:
...         print([x.name for x in bank.datasets()])

:func:`start` makes the state folder (a fresh temporary folder unless one is named), writes
each node's data, issues the certificates, sets each node's cap, starts the nodes and the hub
and waits for them on the gRPC health service, then (by default) registers every city's
dataset through :class:`~sandbox.client.DepartmentClient`. :meth:`Deployment.stop` stops every
process (SIGTERM, then SIGKILL) and removes a temporary state folder. The processes are also
stopped at interpreter exit, and a small watchdog process stops them if the process that
started them dies without stopping them (a notebook kernel killed, say).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.demo.pki import Party, Pki
from sandbox.demo.prepare import (
    DATASET_CAP_DELTA,
    DATASET_CAP_EPSILON,
    FIRM,
    REGULATOR,
    City,
    cities,
    write_data,
)
from sandbox.demo.processes import DemoError, Processes, start_watchdog, stop_watchdog
from sandbox.demo.services import start_services

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from sandbox.client import DepartmentClient, FirmClient, Profile, RegulatorClient
    from sandbox.client.department import Registered

#: The health service names waited for.
#: Persons over the four cities (about 1/15 of it are enterprises, the nodes' datasets).
DEFAULT_ROWS = 30_000


@dataclass
class Deployment:
    """A running embedded deployment. Use as a context manager or call :meth:`stop`."""

    state: Path
    hub: str
    pki: Pki
    public_key: Path
    #: dataset name -> its node's address
    node_addresses: dict[str, str]
    processes: Processes = field(repr=False)
    temporary: bool = False
    watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def city(name: str) -> City:
        """A city by code (``jinan``), Chinese name (``济南``) or dataset (``jinan_enterprise``)."""
        for city in cities():
            if name in (city.code, city.name, city.dataset):
                return city
        known = ", ".join(c.code for c in cities())
        raise DemoError(f"no city {name!r} in the deployment; use one of {known}")

    def party(self, who: str) -> Party:
        """``bank`` (the firm), ``regulator``, or a city (its department)."""
        if who in ("bank", "firm", FIRM.name):
            return FIRM
        if who in ("regulator", REGULATOR.name):
            return REGULATOR
        return self.city(who).department

    def profile(self, who: str) -> Profile:
        """The SDK profile of ``who`` (:meth:`party`): the hub's address and its certificate."""
        profile: Profile = self.pki.profile(self.party(who), self.hub)
        return profile

    def firm(self) -> FirmClient:
        """The bank's :class:`~sandbox.client.FirmClient`."""
        from sandbox.client import FirmClient

        return FirmClient(self.profile("bank"))

    def department(self, city: str) -> DepartmentClient:
        """The :class:`~sandbox.client.DepartmentClient` of ``city``'s department."""
        from sandbox.client import DepartmentClient

        return DepartmentClient(self.profile(city))

    def regulator(self) -> RegulatorClient:
        """The regulator's :class:`~sandbox.client.RegulatorClient`."""
        from sandbox.client import RegulatorClient

        return RegulatorClient(self.profile("regulator"))

    def authority_key(self) -> Ed25519PublicKey:
        """The authority's public key (``authority.pub``): verifies the log and every head."""
        from policies.keys import load_public_key

        key: Ed25519PublicKey = load_public_key(self.public_key)
        return key

    def manifest(self, city: str) -> Path:
        """The manifest (public metadata) of ``city``'s dataset, on its node."""
        c = self.city(city)
        return self.state / "nodes" / c.code / "catalog" / f"{c.dataset}.yaml"

    def register(
        self,
        city: str,
        epsilon_cap: float = DATASET_CAP_EPSILON,
        delta_cap: float = DATASET_CAP_DELTA,
    ) -> Registered:
        """``city``'s department registers its dataset with the hub (manifest, node, cap)."""
        c = self.city(city)
        with self.department(c.code) as dept:
            return dept.register(
                self.manifest(c.code),
                node=c.node.name,
                node_address=self.node_addresses[c.dataset],
                epsilon_cap=epsilon_cap,
                delta_cap=delta_cap,
            )

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a grace period); remove the state
        folder if it was a temporary one. Calling it again does nothing."""
        atexit.unregister(self.stop)
        self.processes.stop_all()
        if self.temporary and self.state.exists():
            shutil.rmtree(self.state, ignore_errors=True)
        # Last: a notebook kernel's manager kills a kernel whose exit takes more than a few
        # seconds; cut off here, the watchdog still stops whatever is left and removes the
        # folder.
        stop_watchdog(self.watchdog)
        self.watchdog = None


def start(
    state: Path | str | None = None,
    *,
    rows: int = DEFAULT_ROWS,
    register: bool | Iterable[str] = True,
    echo: Callable[[str], None] | None = None,
) -> Deployment:
    """Start the hub and four nodes; return the running :class:`Deployment`.

    ``state``: an empty or new folder to keep everything in (kept after :meth:`stop`); by
    default a temporary folder, removed by :meth:`stop`. ``register``: which cities'
    departments register their datasets now (``True``: all, ``False``: none, or city names).
    If starting fails, whatever was started is stopped before the error is raised.
    """
    say = echo or (lambda _: None)
    temporary = state is None
    folder = Path(tempfile.mkdtemp(prefix="sandbox-deployment-")) if state is None else None
    if folder is None:
        folder = Path(str(state)).resolve()
        if folder.exists() and any(folder.iterdir()):
            raise DemoError(f"the state folder {folder} is not empty; name a new one")
        folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir()
    processes = Processes(folder / "logs", handle_sigterm=False)
    deployment = Deployment(
        folder, "", Pki(folder / "pki"), folder / "authority.pub", {}, processes, temporary
    )
    atexit.register(deployment.stop)  # a notebook that fails mid-way still cleans up on exit
    try:
        deployment.watchdog = start_watchdog(
            folder / "logs" / "pids", folder if temporary else None
        )
        _start_services(deployment, rows, say)
        chosen = [c.code for c in cities()] if register is True else list(register or ())
        for city in chosen:
            done = deployment.register(city)
            say(f"{deployment.city(city).dataset} registered (log entry {done.log_index})")
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _start_services(d: Deployment, rows: int, say: Callable[[str], None]) -> None:
    write_data(d.state, rows)
    services = start_services(d.state, d.processes)
    d.pki, d.public_key, d.hub = services.pki, services.public_key, services.hub
    d.node_addresses.update(services.node_addresses)
    say(f"hub on {d.hub}, 4 department nodes; state in {d.state}")


__all__ = ["DEFAULT_ROWS", "Deployment", "start"]
