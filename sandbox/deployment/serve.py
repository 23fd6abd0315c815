"""Flower deployment processes beside the hub and the nodes (``sandbox hub serve --flower``,
``sandbox node serve --flower-superlink``).

Hub side, :func:`start_superlink`: a SuperLink with its state in ``HUB_STATE/flower``, its
certificate issued from the sandbox CA (the CA directory with its key), SuperNode
authentication on, and the departments' SuperNode keys registered (``--flower-node
DATASET=FILE``; a department prints its keys with ``sandbox node flower-key``). The hub's job
runner then runs jobs over it (:attr:`sandbox.hub.jobs.HubJobs.flower`).

Node side, :func:`start_supernodes`: one SuperNode per dataset of the node's catalog, with the
key made at first use in ``NODE_STATE/flower/keys`` (:func:`~sandbox.deployment.processes
.node_key`), the CA certificate pinned, and the node config of the deployed ClientApp (the
catalog, the node's state and the authority's public key: every message is checked against
the signed instruction the node accepted).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from federation.node_authorization import NODE_NAME_KEY
from sandbox.deployment.apps import AUTHORITY_KEY_KEY, CATALOG_DIR_KEY, NODE_STATE_KEY
from sandbox.deployment.processes import DeploymentError, Federation, node_key

__all__ = ["ca_certificate", "parse_node_keys", "start_superlink", "start_supernodes"]


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


def start_superlink(
    state: Path, ca_dir: Path, listen: str, node_keys: Mapping[str, Path]
) -> Federation:
    """Start the hub's SuperLink on ``listen`` (``HOST:PORT``) and register ``node_keys``."""
    if not (ca_dir.is_dir() and (ca_dir / "ca-key.pem").exists()):
        raise DeploymentError(
            "--flower issues the SuperLink's certificate from the sandbox CA: give --ca as the "
            "CA directory (with ca-key.pem)"
        )
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise DeploymentError(f"--flower-listen takes HOST:PORT, not {listen!r}")
    hosts = tuple(dict.fromkeys((host, "127.0.0.1", "localhost")))
    federation = Federation(
        state / "flower", port=int(port), hosts=hosts, bind_host=host.strip("[]")
    )
    federation.issue_tls(ca_dir)
    federation.start_superlink()
    try:
        for dataset, public in node_keys.items():
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
