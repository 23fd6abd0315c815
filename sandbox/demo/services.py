"""Starting the hub and the four department nodes as processes: shared by the demo and the
notebooks' deployment (``sandbox.demo.run``, ``sandbox.demo.deployment``).

The data must already be written (``prepare.write_data``). This makes the CA and every party's
certificate, the authority's signing key (its public half at ``authority.pub``), each node's
own spending cap, then starts the four nodes and the hub on free loopback ports and waits for
each on the gRPC health service."""

from __future__ import annotations

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
from sandbox.demo.processes import Processes, free_port

NODE_SERVICE = "sandbox.v1.NodeService"
HUB_SERVICE = "sandbox.v1.FirmService"


@dataclass
class Services:
    """What :func:`start_services` started: the PKI, the authority's public key file, the
    hub's address and each dataset's node address."""

    pki: Pki
    public_key: Path
    hub: str
    node_addresses: dict[str, str]


def start_services(
    folder: Path, procs: Processes, echo: Callable[[str], None] = lambda _: None
) -> Services:
    """Start everything under ``folder`` (``pki/``, ``hub/``, ``nodes/<city>/``, ``logs/``),
    saying each step in words through ``echo``."""
    logs = folder / "logs"
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
                ],
                address,
            )
        )  # fmt: skip
        addresses[city.dataset] = address
    hub_address = f"127.0.0.1:{free_port()}"
    hub = procs.start(
        "hub",
        [
            "hub", "serve",
            "--state", str(folder / "hub" / "state"),
            *pki.tls_args(HUB),
            "--listen", hub_address,
        ],
        hub_address,
    )  # fmt: skip
    probe = pki.channel_credentials(REGULATOR)
    for child in nodes:
        procs.wait_healthy(child, NODE_SERVICE, probe)
    echo("  4 department nodes are up (separate processes, mTLS; only the hub may call them)")
    procs.wait_healthy(hub, HUB_SERVICE, probe)
    echo(f"  the hub is up on {hub_address} (mTLS); pids of every process in logs/pids")
    return Services(pki, public_key, hub_address, addresses)


__all__ = ["HUB_SERVICE", "NODE_SERVICE", "Services", "start_services", "write_data"]
