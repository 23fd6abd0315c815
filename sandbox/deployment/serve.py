"""Flower deployment processes beside the hub and the nodes (``sandbox hub serve --flower``,
``sandbox node serve --flower-superlink``).

Hub side, :func:`start_superlink`: a SuperLink with its state in ``HUB_STATE/flower``, its
certificate issued from the sandbox CA (the CA directory with its key), SuperNode
authentication on, listening on the loopback interface at a private port (the hub's own
``flwr`` calls use it), and the departments' address (``--flower-listen``) served by a
:class:`~sandbox.deployment.fleet_proxy.FleetProxy` in the hub's process, which forwards the
Fleet API only; the departments' SuperNode keys are registered: every key the hub stored
when a dataset was registered (:func:`store_node_key`, ``HUB_STATE/flower/keys/DATASET.pub``;
the node reports it in ``ReportMetadata``), and ``--flower-node DATASET=FILE`` as an override
(a department prints its keys with ``sandbox node flower-key``). The hub's job runner then runs
jobs over it (:attr:`sandbox.hub.jobs.HubJobs.flower`).

Node side, :func:`start_supernodes`: one SuperNode per dataset of the node's catalog, with the
key made at first use in ``NODE_STATE/flower/keys`` (:func:`~sandbox.deployment.processes
.node_key`), the CA certificate pinned, and the node config of the deployed ClientApp (the
catalog, the node's state and the authority's public key: every message is checked against
the signed instruction the node accepted).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federation.node_authorization import NODE_NAME_KEY
from sandbox.deployment.apps import AUTHORITY_KEY_KEY, CATALOG_DIR_KEY, NODE_STATE_KEY
from sandbox.deployment.fleet_proxy import FleetProxy
from sandbox.deployment.processes import DeploymentError, Federation, node_key

__all__ = [
    "HubSuperLink",
    "ca_certificate",
    "hub_key_dir",
    "parse_node_keys",
    "start_superlink",
    "start_supernodes",
    "store_node_key",
    "stored_node_keys",
]

_log = logging.getLogger(__name__)


def hub_key_dir(state: Path) -> Path:
    """Where the hub keeps the SuperNode public keys of registered datasets."""
    return Path(state) / "flower" / "keys"


def store_node_key(state: Path, dataset: str, public_key: str) -> tuple[Path, bool]:
    """Store ``dataset``'s SuperNode public key (OpenSSH, as the node reported it) in
    ``HUB_STATE/flower/keys/DATASET.pub`` (0600); returns the file and whether it replaced a
    different key. Anything but one EC P-256 public key is refused."""
    text = public_key.strip()
    try:
        key = serialization.load_ssh_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise DeploymentError(
            f"the SuperNode key for {dataset!r} is no OpenSSH public key"
        ) from None
    if not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"):
        raise DeploymentError(f"the SuperNode key for {dataset!r} is not an EC P-256 key")
    if not dataset or "/" in dataset or dataset.startswith("."):
        raise DeploymentError(f"no SuperNode key can be stored for dataset {dataset!r}")
    directory = hub_key_dir(state)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{dataset}.pub"
    old = path.read_text(encoding="ascii").strip() if path.exists() else None
    if old == text:
        return path, False
    tmp = directory / f".{dataset}.pub.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    if old is not None:
        _log.warning(
            "the SuperNode key of dataset %s changed; the new key replaces the old one", dataset
        )
    return path, old is not None


def stored_node_keys(state: Path) -> dict[str, Path]:
    """The SuperNode public keys stored at dataset registration, by dataset."""
    directory = hub_key_dir(state)
    if not directory.is_dir():
        return {}
    return {p.name[: -len(".pub")]: p for p in sorted(directory.glob("*.pub"))}


def ca_certificate(ca: Path) -> Path:
    """The CA certificate: ``ca`` itself or ``ca/ca.pem``."""
    return ca / "ca.pem" if ca.is_dir() else ca


def parse_node_keys(values: list[str]) -> dict[str, Path]:
    """``DATASET=FILE`` options as a mapping; refuses a malformed or missing one."""
    keys: dict[str, Path] = {}
    for value in values:
        dataset, sep, file = value.partition("=")
        if not sep or not dataset or not file:
            raise DeploymentError(f"--flower-node takes DATASET=FILE, not {value!r}")
        if not Path(file).is_file():
            raise DeploymentError(f"--flower-node {dataset}: no key file {file!r}")
        keys[dataset] = Path(file)
    return keys


@dataclass
class HubSuperLink(Federation):
    """The hub's SuperLink (on ``127.0.0.1``, :attr:`address`) and the Fleet proxy that serves
    the departments (:attr:`fleet_address`); :meth:`stop` stops both."""

    proxy: FleetProxy | None = None

    @property
    def fleet_address(self) -> str:
        """The address the departments' SuperNodes connect to (the proxy's)."""
        return self.proxy.address if self.proxy is not None else self.address

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        super().stop()


def start_superlink(
    state: Path, ca_dir: Path, listen: str, node_keys: Mapping[str, Path]
) -> HubSuperLink:
    """Start the hub's SuperLink on a private loopback port with the Fleet proxy on ``listen``
    (``HOST:PORT``) and register the stored keys (:func:`stored_node_keys`) and ``node_keys``
    (which override a stored key)."""
    if not (ca_dir.is_dir() and (ca_dir / "ca-key.pem").exists()):
        raise DeploymentError(
            "--flower issues the SuperLink's certificate from the sandbox CA: give --ca as the "
            "CA directory (with ca-key.pem)"
        )
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise DeploymentError(f"--flower-listen takes HOST:PORT, not {listen!r}")
    hosts = tuple(dict.fromkeys((host, "127.0.0.1", "localhost")))
    # On 127.0.0.1 (the default); its log written as it happens.
    federation = HubSuperLink(state / "flower", hosts=hosts, env_extra={"PYTHONUNBUFFERED": "1"})
    federation.issue_tls(ca_dir)
    federation.start_superlink()
    try:
        federation.proxy = FleetProxy(
            listen,
            federation.address,
            certfile=federation.cert,
            keyfile=federation.key,
            ca_cert=federation.ca_cert,
        ).start()
        for dataset, public in {**stored_node_keys(state), **node_keys}.items():
            federation.register_key(dataset, public)
    except BaseException:
        federation.stop()
        raise
    return federation


def start_supernodes(
    state: Path,
    catalog: Path,
    authority_key: Path,
    ca: Path,
    superlink: str,
    datasets: list[str],
) -> Federation:
    """Start one SuperNode per dataset, connected to the hub's SuperLink at ``superlink``."""
    federation = Federation(state / "flower", superlink_address=superlink)
    shutil.copyfile(ca_certificate(ca), federation.ca_cert)
    try:
        for dataset in datasets:
            private, _ = node_key(state, dataset)
            config = {
                NODE_NAME_KEY: dataset,
                CATALOG_DIR_KEY: str(catalog.resolve()),
                NODE_STATE_KEY: str(state.resolve()),
                AUTHORITY_KEY_KEY: str(authority_key.resolve()),
            }
            federation.start_supernode(dataset, config, key=private)
    except BaseException:
        federation.stop()
        raise
    return federation
