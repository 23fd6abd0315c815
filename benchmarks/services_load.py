"""Load figures of the services benchmark: latency percentiles and throughput for 1, 8, 32 and
128 concurrent firms, and the hub's and node's resident memory while ``queries`` queries go
through them (sampled at 10%, 50% and 100%: bounded memory stays flat)."""

from __future__ import annotations

from typing import Any

from benchmarks.services_latency import concurrent_queries
from benchmarks.services_processes import System

LEVELS = (1, 8, 32, 128)


def load_figures(system: System, queries: int, per_level: int) -> dict[str, Any]:
    """Concurrency levels, then memory over ``queries`` queries from 32 firms."""
    levels = {str(n): concurrent_queries(system, n, max(per_level, n)).summary() for n in LEVELS}
    memory: dict[str, dict[str, float]] = {
        "start": {"hub_rss_mb": system.hub.rss_mb(), "node_rss_mb": system.node.rss_mb()}
    }
    done = 0
    for share in (0.1, 0.5, 1.0):
        target = int(queries * share)
        if target > done:
            concurrent_queries(system, 32, target - done)
            done = target
        memory[f"{int(share * 100)}%"] = {
            "queries": done,
            "hub_rss_mb": round(system.hub.rss_mb(), 1),
            "node_rss_mb": round(system.node.rss_mb(), 1),
        }
    return {"levels": levels, "memory": memory, "memory_queries": queries}
