"""``DepartmentService.RegisterDataset``: a department puts one of its datasets on the hub.

1. The manifest YAML is validated by the catalog's own manifest code
   (:func:`sandbox.hub.routes.parse_manifest_yaml`); bad YAML or fields ``INVALID_ARGUMENT``.
2. A dataset registered (with the authority, or in the routing table) by another department is
   ``PERMISSION_DENIED``; the same department registering again updates it.
3. The hub asks the node itself (``NodeService.ReportMetadata`` over mTLS): the node must be
   named ``node``, trust this authority's key and report a dataset of that name whose public
   metadata (the ``DatasetMetadata`` message) equals the manifest's. Otherwise
   ``FAILED_PRECONDITION``; a node that does not answer ``UNAVAILABLE``.
4. The dataset's :class:`~policies.datasets.DatasetPolicy` (department = the caller, the caps)
   is registered with the authority (a ``dataset`` log entry), then the route and manifest are
   stored (:class:`~sandbox.hub.routes.RouteStore`) and the firm service re-reads its routes.
5. The dataset's Flower SuperNode public key, as the node reported it (``flower_keys``), is
   stored in ``HUB_STATE/flower/keys/DATASET.pub`` and, when the hub runs a SuperLink
   (``sandbox hub serve --flower``), registered with it at once; a changed key is registered
   too and logged as a warning. A key the SuperLink refuses now is logged; the hub registers
   every stored key when it starts.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]

from policies.authority import Authority
from policies.errors import InvalidRequestError
from policies.keys import key_id
from sandbox.credentials import Principal
from sandbox.errors import HubError, NodeUnavailableError, RoleError
from sandbox.hub.firm import FirmService
from sandbox.hub.nodes import NodeRoute
from sandbox.hub.routes import parse_manifest_yaml
from sandbox.node.convert import dataset_metadata_message
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.service import dataset_policy

_log = logging.getLogger(__name__)


def _store_flower_key(authority: Authority, dataset: str, key: str) -> Path:
    """Store ``dataset``'s SuperNode key (refused unless one EC P-256 OpenSSH key)."""
    from sandbox.deployment.processes import DeploymentError
    from sandbox.deployment.serve import store_node_key

    try:
        return store_node_key(authority.state_dir, dataset, key)[0]
    except DeploymentError as exc:
        raise HubError(f"the node's Flower key was refused: {exc}") from None


def _register_flower_key(firm: FirmService, dataset: str, path: Path) -> None:
    """Register a stored key with the hub's SuperLink, when the hub runs one."""
    from sandbox.deployment.processes import DeploymentError

    federation = getattr(firm.jobs, "flower", None)
    if federation is None:
        return
    try:
        federation.register_key(dataset, path)
    except DeploymentError as exc:
        _log.warning("the SuperLink did not register the key of %s: %s", dataset, exc)


def _owner(authority: Authority, firm: FirmService, dataset: str) -> str | None:
    """The department owning ``dataset`` now (the authority's policy, else the route)."""
    for policy in authority.registry.datasets():
        if policy.dataset_id == dataset:
            return policy.department
    stored = firm.route_store.get(dataset)
    return None if stored is None else stored.department


def register_dataset(
    authority: Authority, firm: FirmService, who: Principal, request: pb.RegisterDatasetRequest
) -> pb.RegisterDatasetResponse:
    """Register (or update) the calling department's dataset; see the module docstring."""
    if not request.node or not request.node_address:
        raise InvalidRequestError("name the node holding the data and its HOST:PORT address")
    eps, delta = request.epsilon_cap, request.delta_cap
    if not (math.isfinite(eps) and eps > 0 and math.isfinite(delta) and 0 <= delta < 1):
        raise InvalidRequestError(
            "give the dataset's caps: epsilon_cap > 0 and 0 <= delta_cap < 1 over all grants"
        )
    manifest = parse_manifest_yaml(request.manifest_yaml)
    owner = _owner(authority, firm, manifest.name)
    if owner is not None and owner != who.name:
        raise RoleError(
            f"dataset {manifest.name!r} belongs to department {owner!r}; register your own "
            "datasets only (or rename this one)"
        )
    route = NodeRoute(request.node, request.node_address)
    try:
        report = firm.nodes.report_metadata(route.address)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        raise NodeUnavailableError(
            f"node {route.name} at {route.address} did not answer ({code}); start it (or fix "
            "the address) and register again"
        ) from None
    if report.node != route.name:
        raise HubError(
            f"the node at {route.address} is {report.node!r}, not {route.name!r}; give the name "
            "on its certificate"
        )
    if report.authority_key_id != key_id(authority.public_key):
        raise HubError(
            f"node {route.name} trusts another authority key ({report.authority_key_id}); "
            "install this authority's public key on the node"
        )
    expected = dataset_metadata_message(manifest, route.name)
    reported = [d for d in report.datasets if d.name == manifest.name]
    if not reported:
        raise HubError(
            f"node {route.name} holds no dataset {manifest.name!r}; add its manifest to the "
            "node's catalog first"
        )
    if reported[0] != expected:
        raise HubError(
            f"node {route.name} describes {manifest.name!r} differently from this manifest; "
            "register the manifest the node serves"
        )
    flower_key = report.flower_keys.get(manifest.name)
    key_path = _store_flower_key(authority, manifest.name, flower_key) if flower_key else None
    policy = dataset_policy(manifest, eps, delta).model_copy(update={"department": who.name})
    authority.register_dataset(policy)
    entries = authority.log.search(
        kind="dataset", dataset=manifest.name, newest_first=True, limit=1
    )
    firm.route_store.put(request.manifest_yaml, manifest.name, route, who.name)
    firm.reload()
    if key_path is not None:
        _register_flower_key(firm, manifest.name, key_path)
    return pb.RegisterDatasetResponse(
        dataset=expected, log_index=int(entries[0]["index"]) if entries else 0
    )
