"""The regulator's log page at a million entries: p95 over filters and deep pages.

    python -m benchmarks.web --json [--entries 1000000] [--repeats 20]

Builds an authority state whose log holds ``--entries`` entries (``TransparencyLog.append_many``
in batches of 10,000: requests, decisions, reservations and releases of several firms,
datasets and purposes), then times ``GET /log`` through the ASGI app (a logged-in regulator,
the full page rendered) for each filter below, on the first page and on deep pages (keyset:
``before`` at 90 %, 50 % and 1 % of the log). The baseline is the bare SQL of the same page
(the indexed keyset query alone, no rendering, no HTTP); the ratio is what the web layer costs.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from policies.authority import Authority
from sandbox.credentials import ApiKeyStore

FIRMS = [f"firm-{i}" for i in range(20)]
DATASETS = [f"dataset-{i}" for i in range(12)]
PURPOSES = ["credit risk", "labour statistics", "tax compliance", "public health"]
KINDS = ("request", "decision", "reservation", "release")
BATCH = 10_000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    4.0
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _entry(i: int) -> tuple[str, dict[str, Any]]:
    kind = KINDS[i % 4]
    firm, dataset = FIRMS[(i // 4) % len(FIRMS)], DATASETS[(i // 7) % len(DATASETS)]
    purpose = PURPOSES[(i // 4) % len(PURPOSES)]
    fields: dict[str, Any] = {"firm": firm, "dataset": dataset, "grant_id": f"G-{firm}"}
    if kind == "request":
        fields["request"] = {"purpose": purpose, "action": "query", "epsilon": 0.1}
    elif kind == "decision":
        fields["decision"] = "deny" if i % 13 == 0 else "permit"
    else:
        fields.update(epsilon=0.1, delta=0.0, reservation_id=f"r{i // 4}")
    return kind, fields


def build(state: Path, entries: int) -> Authority:
    """An authority whose log holds ``entries`` entries (plus its own policy entry)."""
    authority = Authority(state, verify_ledger=False)
    done = authority.log.size
    while done < entries:
        n = min(BATCH, entries - done)
        authority.log.append_many([_entry(i) for i in range(done, done + n)])
        done += n
    return authority


def measure(authority: Authority, keys: ApiKeyStore, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from sandbox.web import create_app
    from sandbox.web.queries import LogFilter, log_page

    client = TestClient(create_app(authority, keys, secure=False))
    client.post("/login", data={"api_key": keys.issue("regulator", "bench")})
    size = authority.log.size
    filters: list[dict[str, str]] = [
        {},
        {"firm": FIRMS[3]},
        {"dataset": DATASETS[5]},
        {"kind": "release"},
        {"decision": "deny"},
        {"purpose": PURPOSES[2]},
        {"firm": FIRMS[7], "kind": "decision"},
        {"since": "2020-01-01", "until": "2100-01-01"},
    ]
    befores = [None, int(size * 0.9), size // 2, size // 100]
    page_ms: list[float] = []
    sql_ms: list[float] = []
    per_filter: dict[str, float] = {}
    conn = authority.db.conn()
    for params in filters:
        mine: list[float] = []
        for before in befores:
            query = dict(params)
            if before is not None:
                query["before"] = str(before)
            parsed = LogFilter.parse(params)
            client.get("/log", params=query)  # warm
            for _ in range(repeats):
                t0 = time.perf_counter()
                response = client.get("/log", params=query)
                mine.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"/log {query}: HTTP {response.status_code}")
                t0 = time.perf_counter()
                log_page(conn, parsed, before)
                sql_ms.append((time.perf_counter() - t0) * 1000)
        per_filter[json.dumps(params, sort_keys=True)] = round(percentile(mine, 0.95), 2)
        page_ms.extend(mine)
    p95, sql_p95 = percentile(page_ms, 0.95), percentile(sql_ms, 0.95)
    return {
        "entries": size,
        "requests": len(page_ms),
        "log_page_p95_ms": round(p95, 2),
        "log_page_p50_ms": round(percentile(page_ms, 0.5), 2),
        "sql_p95_ms": round(sql_p95, 3),
        "page_over_sql_p95": round(p95 / sql_p95, 1) if sql_p95 else None,
        "p95_ms_per_filter": per_filter,
        "target_ms": 300,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--state", type=Path, help="reuse (or create) this state directory")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.state or Path(tmp)
        t0 = time.perf_counter()
        authority = build(root / "state", args.entries)
        build_s = time.perf_counter() - t0
        result = measure(authority, ApiKeyStore(Path(tmp) / "keys.db"), args.repeats)
        result["build_s"] = round(build_s, 1)
    if args.json:
        print(json.dumps(result))
        return
    print(f"log page at {result['entries']:,} entries ({result['requests']} requests)")
    print(f"  p95 {result['log_page_p95_ms']} ms (target < 300), p50 {result['log_page_p50_ms']}")
    print(f"  bare SQL p95 {result['sql_p95_ms']} ms; page/SQL {result['page_over_sql_p95']}x")
    for name, ms in result["p95_ms_per_filter"].items():
        print(f"  {name:45} p95 {ms} ms")


if __name__ == "__main__":
    main()
