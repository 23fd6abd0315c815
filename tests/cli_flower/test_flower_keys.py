"""SuperNode keys travel with dataset registration: the node reports each dataset's Flower
public key in ``ReportMetadata``; on ``RegisterDataset`` the hub stores it (0600) and registers
it with its running SuperLink at once; a hub starting its SuperLink registers every stored key.
Real mTLS hub and node, a real ``flower-superlink`` process."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from hub_helpers import make_pki, real_node

from policies.authority import Authority
from sandbox.catalog import Catalog
from sandbox.credentials import Principal
from sandbox.deployment.processes import (
    CONNECTION,
    DeploymentError,
    Federation,
    free_port,
    node_key,
    write_node_key,
)
from sandbox.deployment.serve import start_superlink, store_node_key, stored_node_keys
from sandbox.hub import HubTLS, start
from sandbox.hub.jobs import HubJobs
from sandbox.hub.registration import _register_flower_key
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc


def _registered(federation: Federation) -> list[dict[str, Any]]:
    """The SuperNodes the SuperLink holds (its API may still be coming up: asked again)."""
    deadline = time.monotonic() + 30
    while True:
        out = json.loads(federation._cli(["supernode", "list", CONNECTION, "--format", "json"]))
        if out.get("success") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert out.get("success"), out
    nodes: list[dict[str, Any]] = out["nodes"]
    return [n for n in nodes if n["status"] in ("registered", "online", "offline")]


def _already_registered(federation: Federation, public: Path) -> bool:
    """Registering the same key again is refused by the SuperLink iff it holds that key."""
    try:
        federation._cli(["supernode", "register", str(public), CONNECTION])
    except DeploymentError as exc:
        return "already" in str(exc).lower() or "exists" in str(exc).lower()
    return False


@pytest.mark.slow  # two SuperLink processes: 10-20 s on 2 shared cores
def test_registration_stores_and_registers_the_nodes_flower_key(
    tmp_path: Path, pums_catalog_dir: Path
) -> None:
    pki = make_pki(
        tmp_path,
        Principal("hub", "hub-1"),
        Principal("node", "node-1"),
        Principal("department", "census"),
    )
    authority = Authority(tmp_path / "state")
    node = real_node(tmp_path, pki, authority, pums_catalog_dir)
    tls = HubTLS.from_files(pki / "hub-hub-1.pem", pki / "hub-hub-1-key.pem", pki / "ca.pem")
    hub = start(authority, Catalog({}, tmp_path), {}, tls=tls, node_timeout_s=10)
    superlink = start_superlink(authority.state_dir, pki, f"127.0.0.1:{free_port()}", {})
    again: Federation | None = None
    try:
        assert isinstance(hub.firm.jobs, HubJobs)
        hub.firm.jobs.flower = superlink
        assert _registered(superlink) == []  # no key given by hand (no --flower-node)
        creds = grpc.ssl_channel_credentials(
            (pki / "ca.pem").read_bytes(),
            (pki / "department-census-key.pem").read_bytes(),
            (pki / "department-census.pem").read_bytes(),
        )
        with grpc.secure_channel(f"127.0.0.1:{hub.port}", creds) as channel:
            pb_grpc.DepartmentServiceStub(channel).RegisterDataset(
                pb.RegisterDatasetRequest(
                    manifest_yaml=(pums_catalog_dir / "pums.yaml").read_text(encoding="utf-8"),
                    node="node-1",
                    node_address=f"127.0.0.1:{node.port}",
                    epsilon_cap=20.0,
                    delta_cap=1e-6,
                ),
                timeout=60,
            )
        node_public = node_key(node.service.guard.state_dir, "pums")[1]
        stored = authority.state_dir / "flower" / "keys" / "pums.pub"
        assert stored.read_text() == node_public.read_text().strip() + "\n"
        assert stored.stat().st_mode & 0o777 == 0o600
        assert len(_registered(superlink)) == 1
        assert _already_registered(superlink, node_public)
        # A hub starting its SuperLink over a state with stored keys registers them.
        other = tmp_path / "other-hub"
        (other / "flower" / "keys").mkdir(parents=True)
        shutil.copy(stored, other / "flower" / "keys" / "pums.pub")
        again = start_superlink(other, pki, f"127.0.0.1:{free_port()}", {})
        assert len(_registered(again)) == 1
        assert _already_registered(again, node_public)
    finally:
        if again is not None:
            again.stop()
        superlink.stop()
        hub.stop()
        node.stop(None)


def test_store_node_key_refuses_non_keys_and_warns_on_a_changed_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, first = write_node_key(tmp_path / "k", "a")
    _, second = write_node_key(tmp_path / "k", "b")
    state = tmp_path / "hub"
    path, changed = store_node_key(state, "pums", first.read_text())
    assert not changed and path.stat().st_mode & 0o777 == 0o600
    assert store_node_key(state, "pums", first.read_text()) == (path, False)
    with caplog.at_level(logging.WARNING):
        assert store_node_key(state, "pums", second.read_text()) == (path, True)
    assert "pums changed" in caplog.text
    assert path.read_text().strip() == second.read_text().strip()
    assert stored_node_keys(state) == {"pums": path}
    for bad in ("not a key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0x"):
        with pytest.raises(DeploymentError):
            store_node_key(state, "other", bad)
    with pytest.raises(DeploymentError):
        store_node_key(state, "../escape", first.read_text())
    assert stored_node_keys(state) == {"pums": path}


def test_registration_registers_with_the_running_superlink_only(tmp_path: Path) -> None:
    calls: list[tuple[str, Path]] = []
    fake = SimpleNamespace(register_key=lambda name, public: calls.append((name, public)))
    key = tmp_path / "pums.pub"
    _register_flower_key(SimpleNamespace(jobs=SimpleNamespace(flower=None)), "pums", key)  # type: ignore[arg-type]
    assert calls == []
    _register_flower_key(SimpleNamespace(jobs=SimpleNamespace(flower=fake)), "pums", key)  # type: ignore[arg-type]
    assert calls == [("pums", key)]
