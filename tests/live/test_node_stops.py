"""A department node process stops in the middle of a query.

The node is a real ``sandbox node serve`` process; the hub runs in this process over real
mTLS with a short node timeout. The node is frozen (SIGSTOP) so that it holds the query
without answering, then killed (SIGKILL) and started again on the same port and state. The
firm gets a clear error saying the budget stays charged (the hub cannot know that nothing left
the node); the ledger holds exactly that charge; the node continues afterwards; the exported
log verifies and the ledger replays from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from benchmarks.services_processes import (
    DATASET,
    NODE_NAME,
    PUMS,
    PURPOSE,
    build_world,
    free_port,
    node_proc,
)
from policies.authority import Authority
from policies.replay import ledger_differences
from policies.verify import verify_export
from sandbox.catalog import load_catalog
from sandbox.client import FirmClient
from sandbox.errors import HubUnavailable
from sandbox.hub import HubTLS, NodeRoute, start

SQL = f"SELECT COUNT(*) AS n FROM {DATASET}"


def test_a_node_stopped_mid_query_leaves_the_charge_and_a_verifiable_log(tmp_path: Path) -> None:
    world = build_world(
        tmp_path, ["acme"], grant_epsilon=5.0, dataset_epsilon=10.0, node_epsilon=10.0
    )
    node = node_proc(world, free_port())
    node.start()
    authority = Authority(world.state)
    cert, key = world.cert("hub", "hub-1")
    tls = HubTLS.from_files(cert, key, world.pki / "ca.pem")
    routes = {DATASET: NodeRoute(NODE_NAME, f"127.0.0.1:{node.port}")}
    hub = start(authority, load_catalog(PUMS), routes, tls=tls, node_timeout_s=60)
    firm = FirmClient(world.profile("acme", hub.port))
    grant = world.grants["acme"].grant_id
    try:
        firm.query(SQL, epsilon=0.5, purpose=PURPOSE)  # the node answers (and is warm)
        hub.nodes.timeout_s = 1.5  # from now on the hub waits 1.5 s for a node
        before = authority.remaining(grant, DATASET).epsilon
        os.kill(node.pid, signal.SIGSTOP)  # the node takes the query and never answers
        try:
            with pytest.raises(HubUnavailable, match="stays charged"):
                firm.query(SQL, epsilon=0.5, purpose=PURPOSE)
        finally:
            node.kill9()  # SIGKILL ends a stopped process too
        charged = before - authority.remaining(grant, DATASET).epsilon
        assert charged == pytest.approx(0.5)  # kept: the node never confirmed nothing left
        node.start()  # same port, same state
        hub.nodes.timeout_s = 60  # its first query loads the data again
        after = firm.query(SQL, epsilon=0.5, purpose=PURPOSE)
        assert after.epsilon_spent == pytest.approx(0.5)
    finally:
        firm.close()
        hub.stop()
        node.stop()
    out = tmp_path / "log.jsonl"
    authority.log.export(out)
    verified = verify_export(out, authority.public_key)
    assert verified.size == authority.log.size
    assert ledger_differences(authority.db) == []
    releases = [json.loads(e) for e in authority.log.entries()]
    releases = [e for e in releases if e["kind"] == "release"]
    assert len(releases) == 3  # two answers and the charged failure
    failure = {"node": NODE_NAME, "reason": "node-unavailable", "status": "failed"}
    record = json.dumps(failure, sort_keys=True).encode()
    assert releases[1]["release_sha256"] == hashlib.sha256(record).hexdigest()
