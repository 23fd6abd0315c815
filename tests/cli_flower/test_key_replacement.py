"""A department's SuperNode key that is replaced (re-registration with a new key, perhaps
because the old one leaked) stops opening the SuperLink: the hub's Federation unregisters the
old key's node, and a SuperNode still holding it is dropped and refused. Real
``flower-superlink`` and ``flower-supernode`` processes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from federation.node_authorization import NODE_NAME_KEY
from sandbox.deployment.processes import CONNECTION, Federation, write_node_key


def _nodes(federation: Federation) -> list[dict[str, Any]]:
    out = json.loads(federation._cli(["supernode", "list", CONNECTION, "--format", "json"]))
    assert out.get("success"), out
    nodes: list[dict[str, Any]] = out["nodes"]
    return nodes


def test_a_replaced_key_is_unregistered_and_its_supernode_dropped(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "flower")
    fed.start_superlink()
    try:
        node = fed.start_supernode("north", {NODE_NAME_KEY: "north"})  # registers its key
        fed.wait_connected(1, timeout=90)
        old_id = fed.node_ids["north"]
        assert [n["status"] for n in _nodes(fed) if int(n["node-id"]) == old_id] == ["online"]

        _, new_public = write_node_key(tmp_path / "replacement", "north")
        fed.register_key("north", new_public)
        new_id = fed.node_ids["north"]
        assert new_id != old_id
        status = {int(n["node-id"]): n["status"] for n in _nodes(fed)}
        assert status[old_id] == "unregistered"
        assert status[new_id] == "registered"

        deadline = time.monotonic() + 60  # the old SuperNode learns it at its next Fleet call
        while fed.connected() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert fed.connected() == 0, "the SuperNode with the replaced key is still online"
        time.sleep(3)  # restarted by its supervisor, it is refused again
        assert fed.connected() == 0
        log = (fed.workdir / "logs" / "supernode-north.log").read_text(encoding="utf-8")
        assert "failed to activate supernode" in log.lower() or "unauthenticated" in log.lower()
        node.stop()
    finally:
        fed.stop()
