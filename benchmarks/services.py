"""The services benchmark: a department node and the hub as real processes over mTLS.

    python -m benchmarks.services --json                      # default figures, < 2 minutes
    python -m benchmarks.services --json --load --load-queries 2000 --drill-restarts 1

Default figures: ``node_query_p50_ms`` (the node's own ``Execute`` with an instruction signed
by the authority's key, sent straight to it), ``e2e_p50_ms``/``e2e_p99_ms`` (a firm's query
through the hub, over TLS, the same SQL and epsilon in the same run), ``overhead_p50_ms``
(their difference), ``qps_32_clients``, ``cli_query_s`` (one CLI query as a whole process; see
``cli_kind``) with ``cli_overhead_s`` (that minus ``e2e_p50``), and ``node_start_s`` (process
spawn to health ``SERVING``). ``--load`` adds ``load``: latency and throughput for 1, 8, 32 and
128 firms, hub and node memory over ``--load-queries`` queries, and the kill -9 drills.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.services_latency import (
    cli_query_s,
    concurrent_queries,
    firm_query_ms,
    node_query_ms,
    percentile,
)
from benchmarks.services_processes import build_world, node_proc, start_system
from sandbox.client import FirmClient

#: Budgets large enough that no measurement runs out (the drills use small ones).
BIG = 1_000_000.0


def measure(root: Path, samples: int, clients: int = 32) -> dict[str, Any]:
    firms = [f"firm{i:03d}" for i in range(128)]
    world = build_world(
        root, firms, grant_epsilon=BIG, dataset_epsilon=BIG * 10, node_epsilon=BIG * 10
    )
    starts = []
    for _ in range(3):  # node start: spawn to SERVING, median of 3 (fresh ports each time)
        from benchmarks.services_processes import free_port

        proc = node_proc(world, free_port())
        starts.append(proc.start())
        proc.stop()
    system = start_system(world)
    try:
        with FirmClient(world.profile(firms[0], system.hub.port)) as client:
            firm_query_ms(client, 20)  # warm: engine import, contexts, channels
            node_query_ms(world, system.node.port, 20)
            node_ms = node_query_ms(world, system.node.port, samples)
            e2e_ms = firm_query_ms(client, samples)
        many = concurrent_queries(system, clients, samples * 2)
        cli = cli_query_s(world, system.hub.port, firms[1])
        out: dict[str, Any] = {
            "node_query_p50_ms": round(percentile(node_ms, 0.5), 2),
            "e2e_p50_ms": round(percentile(e2e_ms, 0.5), 2),
            "e2e_p99_ms": round(percentile(e2e_ms, 0.99), 2),
            "overhead_p50_ms": round(percentile(e2e_ms, 0.5) - percentile(node_ms, 0.5), 2),
            f"qps_{clients}_clients": many.summary()["qps"],
            **cli,
            "cli_overhead_s": round(float(cli["cli_query_s"]) - percentile(e2e_ms, 0.5) / 1000, 3),
            "node_start_s": round(statistics.median(starts), 3),
            "samples": samples,
        }
        out["system"] = system
        return out
    except BaseException:
        system.stop()
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--samples", type=int, default=300, help="queries per latency figure")
    parser.add_argument("--load", action="store_true", help="also the load figures and drills")
    parser.add_argument("--load-queries", type=int, default=100_000, help="queries for memory")
    parser.add_argument("--load-per-level", type=int, default=1000, help="queries per level")
    parser.add_argument("--drill-firms", type=int, default=200, help="firms racing in drills")
    parser.add_argument("--drill-restarts", type=int, default=3, help="kill -9 of each")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        figures = measure(Path(tmp) / "main", args.samples)
        system = figures.pop("system")
        try:
            if args.load:
                from benchmarks.services_load import load_figures

                figures["load"] = load_figures(system, args.load_queries, args.load_per_level)
        finally:
            system.stop()
        if args.load:
            from benchmarks.services_drills import drill

            figures["load"]["drills"] = drill(
                Path(tmp) / "drill", args.drill_firms, args.drill_restarts
            )
    figures["wall_s"] = round(time.perf_counter() - t0, 1)
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
        return
    for name, value in figures.items():
        if name != "load":
            print(f"{name:<22} {value}")
    if "load" in figures:
        print(json.dumps(figures["load"], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
