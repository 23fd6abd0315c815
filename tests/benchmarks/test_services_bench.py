"""Smoke test of the services benchmark's building blocks: a world (PKI, authority state,
grants, node cap), a real node process over mTLS that answers a signed instruction sent
straight to it, kill -9 and restart on the same port, and the percentile helper."""

from __future__ import annotations

from pathlib import Path

from benchmarks.services_latency import node_query_ms, percentile
from benchmarks.services_processes import build_world, free_port, node_proc


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(100)], 0.99) == 99.0


def test_node_process_answers_signed_instruction_and_restarts(tmp_path: Path) -> None:
    world = build_world(
        tmp_path, ["acme"], grant_epsilon=5.0, dataset_epsilon=10.0, node_epsilon=10.0
    )
    assert set(world.grants) == {"acme", "direct"}
    node = node_proc(world, free_port())
    try:
        assert node.start() < 30
        times = node_query_ms(world, node.port, 2)
        assert len(times) == 2 and all(t > 0 for t in times)
        assert node.rss_mb() > 0
        node.kill9()
        node.start()  # same port, same state: the node continues
        assert len(node_query_ms(world, node.port, 1)) == 1
    finally:
        node.stop()
