"""Starting the hub and the four department nodes as processes: shared by the demo and the
notebooks' deployment (``sandbox.demo.run``, ``sandbox.demo.deployment``).

The data must already be written (``prepare.write_data``). This makes the CA and every party's
certificate, the authority's signing key (its public half at ``authority.pub``), each node's
own spending cap, then starts the four nodes and the hub on free loopback ports and waits for
each on the gRPC health service.

With ``flower=True`` training jobs run over real Flower deployment processes: the hub starts a
Flower SuperLink beside it (``sandbox hub serve --flower``: TLS from the demo's CA, SuperNode
authentication) and every node one SuperNode per dataset connecting to it
(``sandbox node serve --flower-superlink``). A SuperNode is refused, and restarted by its node,
until its key is registered; the key travels with dataset registration (``RegisterDataset``:
the node reports it in ``ReportMetadata``), so there is no manual key step.
:func:`wait_supernodes` waits until the SuperLink sees them online. Flower's own output goes to
``HUB_STATE/flower/logs`` and ``NODE_STATE/flower/logs``, linked from the demo's ``logs/``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.demo.pki import Pki, make_pki
from sandbox.demo.prepare import (
    FIRM,
    HUB,
    NODE_CAP_DELTA,
    NODE_CAP_EPSILON,
    REGULATOR,
    cities,
    init_authority,
    write_data,
)
from sandbox.demo.processes import Child, DemoError, Processes, free_port

NODE_SERVICE = "sandbox.v1.NodeService"
HUB_SERVICE = "sandbox.v1.FirmService"


@dataclass
class Services:
    """What :func:`start_services` started: the PKI, the authority's public key file, the
    hub's address, each dataset's node address and, with Flower, the SuperLink's address and
    working directory (``HUB_STATE/flower``)."""

    pki: Pki
    public_key: Path
    hub: str
    node_addresses: dict[str, str]
    superlink: str | None = None
    flower_dir: Path | None = None


def start_services(
    folder: Path,
    procs: Processes,
    echo: Callable[[str], None] = lambda _: None,
    *,
    flower: bool = False,
) -> Services:
    """Start everything under ``folder`` (``pki/``, ``hub/``, ``nodes/<city>/``, ``logs/``),
    saying each step in words through ``echo``; ``flower`` also starts the hub's SuperLink and
    the nodes' SuperNodes (the module's docstring)."""
    logs = folder / "logs"
    superlink = f"127.0.0.1:{free_port()}" if flower else None
    flower_args = [] if superlink is None else ["--flower-superlink", superlink]
    parties = [HUB, FIRM, REGULATOR] + [c.node for c in cities()]
    parties += [c.department for c in cities()]
    pki, issuing = make_pki(folder / "pki", parties, logs / "setup.log", procs)
    public_key = init_authority(folder / "hub" / "state", folder / "authority.pub")
    capping = procs.run(
        [
            [
                "node", "cap", city.dataset,
                "--epsilon", str(NODE_CAP_EPSILON), "--delta", str(NODE_CAP_DELTA),
                "--authority-key", str(public_key),
                "--state", str(folder / "nodes" / city.code / "state"),
            ]
            for city in cities()
        ],
        logs / "setup.log",
    )  # fmt: skip
    issuing.wait()
    echo(
        f"  the data authority made a CA and {len(parties)} certificates (sandbox certs): "
        "every party proves who it is with its own certificate"
    )
    echo("  the authority made its signing key; its public half is authority.pub")
    capping.wait()
    echo(f"  each node set its own spending cap (epsilon {NODE_CAP_EPSILON:g}) on its dataset")
    # The hub first: its SuperLink (with --flower) starts while the nodes start.
    hub_address = f"127.0.0.1:{free_port()}"
    hub_tls = pki.tls_args(HUB)
    if superlink is not None:  # the SuperLink's certificate is issued from the CA directory
        hub_tls[hub_tls.index("--ca") + 1] = str(pki.directory)
    hub = procs.start(
        "hub",
        [
            "hub", "serve",
            "--state", str(folder / "hub" / "state"),
            *hub_tls,
            "--listen", hub_address,
            *(["--flower", "--flower-listen", superlink] if superlink else []),
        ],
        hub_address,
    )  # fmt: skip
    addresses: dict[str, str] = {}
    nodes = []
    for city in cities():
        address = f"127.0.0.1:{free_port()}"
        nodes.append(
            procs.start(
                city.node.name,
                [
                    "node", "serve",
                    "--catalog", str(folder / "nodes" / city.code / "catalog"),
                    "--authority-key", str(public_key),
                    "--state", str(folder / "nodes" / city.code / "state"),
                    *pki.tls_args(city.node),
                    "--listen", address,
                    *flower_args,
                ],
                address,
            )
        )  # fmt: skip
        addresses[city.dataset] = address
    if superlink is not None:
        _link_flower_logs(folder)
    probe = pki.channel_credentials(REGULATOR)
    for child in nodes:
        procs.wait_healthy(child, NODE_SERVICE, probe)
    echo("  4 department nodes are up (separate processes, mTLS; only the hub may call them)")
    procs.wait_healthy(hub, HUB_SERVICE, probe)
    echo(f"  the hub is up on {hub_address} (mTLS); pids of every process in logs/pids")
    if superlink is None:
        return Services(pki, public_key, hub_address, addresses)
    _wait_superlink(hub)
    echo(
        f"  beside the hub, a Flower SuperLink on {superlink} (TLS from the demo's CA, SuperNode "
        "authentication: only registered SuperNode keys get in); each node runs one Flower "
        "SuperNode per dataset on its own side, refused until its key is registered"
    )
    flower_dir = folder / "hub" / "state" / "flower"
    return Services(pki, public_key, hub_address, addresses, superlink, flower_dir)


#: What ``sandbox hub serve --flower`` prints once its SuperLink runs and the hub's job runner
#: uses it (from then on a dataset registration registers its SuperNode key at once).
SUPERLINK_READY = b"Flower SuperLink on "


def _wait_superlink(hub: Child, timeout: float = 120.0) -> None:
    """Block until the hub says its SuperLink is running. Registering datasets before that
    could store a key after the SuperLink took the stored keys and before the hub registers new
    ones with it (such a key would reach the SuperLink only at the hub's next start)."""
    deadline = time.monotonic() + timeout
    while SUPERLINK_READY not in hub.log.read_bytes():
        if hub.process.poll() is not None:
            raise DemoError(f"the hub stopped while starting its SuperLink; see {hub.log}")
        if time.monotonic() > deadline:
            raise DemoError(f"the hub's Flower SuperLink did not start; see {hub.log}")
        time.sleep(0.2)


def _link_flower_logs(folder: Path) -> None:
    """Links in ``logs/`` to the Flower logs the hub and the nodes write under their state
    (``flower-hub``: the SuperLink; ``flower-<city>``: the SuperNodes and their executors)."""
    logs = folder / "logs"
    targets = {"flower-hub": Path("..", "hub", "state", "flower", "logs")}
    for city in cities():
        targets[f"flower-{city.code}"] = Path("..", "nodes", city.code, "state", "flower", "logs")
    for name, target in targets.items():
        link = logs / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)


def supernodes_online(flower_dir: Path) -> int:
    """How many SuperNodes the hub's SuperLink sees online (``flwr supernode list`` with the
    hub's Flower connection, ``HUB_STATE/flower/flwr-home``)."""
    from sandbox.deployment.processes import DeploymentError, Federation

    try:
        return Federation(flower_dir, port=1).connected()  # the port is not used: no start
    except (DeploymentError, ValueError):
        return 0  # the SuperLink is not answering yet


def wait_supernodes(flower_dir: Path, count: int, timeout: float = 90.0) -> float:
    """Block until ``count`` SuperNodes are online at the hub's SuperLink; returns the seconds
    waited. A SuperNode whose key was registered moments ago may still be in its node's restart
    back-off (at most 10 s)."""
    started = time.monotonic()
    while supernodes_online(flower_dir) < count:
        if time.monotonic() - started > timeout:
            raise DemoError(
                f"fewer than {count} Flower SuperNodes reached the hub's SuperLink in "
                f"{timeout:.0f} s; see logs/flower-hub/ and logs/flower-<city>/"
            )
        time.sleep(2.0)  # each look starts the flwr CLI (a Python process)
    return time.monotonic() - started


__all__ = [
    "HUB_SERVICE",
    "NODE_SERVICE",
    "Services",
    "start_services",
    "supernodes_online",
    "wait_supernodes",
    "write_data",
]
