"""Policy engine, budget ledger and transparency log benchmarks, each against its baseline.

    python -m benchmarks.policies --json          # full run, includes the 1,000,000-entry log
    python -m benchmarks.policies --log-size 100000
    python -m benchmarks.policies --json --only decisions --repeat 7

Prints a short table, or with ``--json`` one JSON object. Decision latency is reported in
wall-clock time and in CPU time of the deciding thread (``*_cpu_*``): on a shared machine
the first includes time spent waiting for a core, the second is the cost on one core.
Baselines, measured in the same run on the same data: a bare ``cedarpy.is_authorized``
call with the same policy set and entities (for a decision), bare SQLite inserts of the
same rows with the same batch size and durability settings (for a log append), and a bare
durable one-row SQLite transaction (for a use through the authority: decide, reserve and
commit are one durable transaction each, every budget change with its log entry).

The decision benchmark runs ``--repeat`` times, each on a fresh state directory, with the
bare Cedar baseline measured right after the decisions in each run; the JSON gives the
median of every figure over the runs and, under ``decision_runs``, each run's throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy

from policies import (
    Action,
    BudgetLedger,
    ColumnRef,
    ColumnRule,
    DatasetPolicy,
    DatasetTerms,
    Grant,
    PolicyEngine,
    Registry,
    Request,
    TransparencyLog,
    verify_export,
)
from policies.authority import Authority
from policies.db import Database, connect
from policies.keys import load_or_create_signing_key
from policies.ledger import dataset_account, grant_account

NOW = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
COLUMNS = {
    "income": ColumnRule.AGGREGATE_ONLY,
    "region": ColumnRule.GROUP_BY,
    "age": ColumnRule.FILTER_ONLY,
    "name": ColumnRule.NEVER,
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup_engine(root: Path, firms: int, datasets: int) -> tuple[PolicyEngine, list[Request]]:
    db = Database(root / "state.db")  # one database, as inside an Authority
    registry = Registry(db)
    ledger = BudgetLedger(db)
    for d in range(datasets):
        registry.put_dataset(
            DatasetPolicy(
                dataset_id=f"ds{d}",
                department=f"dept{d}",
                identity_columns=frozenset({"id_card_number"}),
                epsilon_cap=1e6,
                delta_cap=0.5,
            )
        )
        ledger.open_account(dataset_account(f"ds{d}"), 1e6, 0.5)
    for f in range(firms):
        names = [f"ds{(f + k) % datasets}" for k in range(3)]
        grant = Grant(
            grant_id=f"g{f}",
            firm=f"firm{f}",
            purpose=f"purpose{f % 7}",
            legal_basis="PIPL art. 13",
            actions=frozenset({Action.QUERY}),
            epsilon_per_use=1.0,
            min_group_size=10,
            valid_from=datetime(2026, 1, 1, tzinfo=UTC),
            valid_until=datetime(2027, 1, 1, tzinfo=UTC),
            approved_by="official",
            datasets={n: DatasetTerms(epsilon=1e5, delta=0.1, columns=COLUMNS) for n in names},
        )
        registry.create_grant(grant)
        for n in names:
            ledger.open_account(grant_account(grant.grant_id, n), 1e5, 0.1)
    rng = random.Random(1)
    requests = []
    for _ in range(2000):
        f = rng.randrange(firms)
        wrong = rng.random() < 0.2  # some requests are denied: wrong purpose or column
        requests.append(
            Request(
                firm=f"firm{f}",
                dataset=f"ds{(f + rng.randrange(3)) % datasets}",
                purpose=f"purpose{(f + (1 if wrong else 0)) % 7}",
                action=Action.QUERY,
                columns=(
                    ColumnRef(name="income", use="aggregate"),
                    ColumnRef(name="region", use="group_by"),
                    ColumnRef(name="name" if rng.random() < 0.1 else "age", use="filter"),
                ),
                epsilon=round(rng.uniform(0.01, 0.9), 3),
                delta=1e-9,
                min_group_size=10,
            )
        )
    return PolicyEngine(registry, ledger, clock=lambda: NOW), requests


def bench_decisions(root: Path, n: int) -> dict[str, Any]:
    engine, requests = _setup_engine(root, firms=200, datasets=20)
    for r in requests[:500]:  # warm caches and connections
        engine.decide(r)
    latencies, cpu = [], []
    permits = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        d = engine.decide(requests[i % len(requests)])
        cpu.append(time.thread_time() - c0)
        latencies.append(time.perf_counter() - t0)
        permits += d.permit
    elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
    # Baseline: the bare Cedar call the engine wraps, same policy set and entity handle.
    snap = engine._current()
    policies = cedarpy.PolicySet.from_str(engine.rules)
    bare_req = {
        "principal": {"type": "Firm", "id": "firm0"},
        "action": {"type": "Action", "id": "query"},
        "resource": {"type": "Dataset", "id": "ds0"},
        "context": {
            "grant": {"__entity": {"type": "Grant", "id": "g0"}},
            "purpose": "purpose0",
            "column_uses": ["ds0/age/filter", "ds0/income/aggregate", "ds0/region/group_by"],
            "epsilon_micro": 500000,
            "min_group_size": 10,
            "now": int(NOW),
        },
    }
    bare, bare_cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        cedarpy.is_authorized(bare_req, policies, snap.entities)
        bare_cpu.append(time.thread_time() - c0)
        bare.append(time.perf_counter() - t0)
    return {
        "decision_p50_ms": statistics.median(latencies) * 1e3,
        "decision_p99_ms": _percentile(latencies, 0.99) * 1e3,
        "decisions_per_s": n / elapsed,
        "decision_cpu_p99_ms": _percentile(cpu, 0.99) * 1e3,
        "decisions_per_cpu_s": n / cpu_elapsed,
        "decision_permit_share": permits / n,
        "bare_cedar_p99_ms": _percentile(bare, 0.99) * 1e3,
        "bare_cedar_per_s": n / sum(bare),
        "bare_cedar_cpu_p99_ms": _percentile(bare_cpu, 0.99) * 1e3,
        "bare_cedar_per_cpu_s": n / sum(bare_cpu),
    }


def bench_decisions_repeated(root: Path, n: int, repeat: int) -> dict[str, Any]:
    """``bench_decisions`` ``repeat`` times on fresh state: the median of each figure."""
    runs = []
    for i in range(repeat):
        run_root = root / f"decisions-{i}"
        run_root.mkdir()
        runs.append(bench_decisions(run_root, n))
    out: dict[str, Any] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out["decision_repeats"] = repeat
    out["decision_runs"] = [
        {
            key: round(r[key])
            for key in (
                "decisions_per_s",
                "decisions_per_cpu_s",
                "bare_cedar_per_s",
                "bare_cedar_per_cpu_s",
            )
        }
        for r in runs
    ]
    return out


def bench_release(root: Path, n: int) -> dict[str, Any]:
    """Whole uses through the authority: decide -> reserve -> commit, each one transaction."""
    authority = Authority(root / "release-state", clock=lambda: NOW)
    authority.register_dataset(
        DatasetPolicy(dataset_id="ds0", department="d", epsilon_cap=1e6, delta_cap=1e-3)
    )
    authority.create_grant(
        Grant(
            grant_id="g0",
            firm="firm0",
            purpose="purpose0",
            legal_basis="PIPL art. 13",
            actions=frozenset({Action.QUERY}),
            epsilon_per_use=1.0,
            min_group_size=10,
            valid_from=datetime(2026, 1, 1, tzinfo=UTC),
            valid_until=datetime(2027, 1, 1, tzinfo=UTC),
            approved_by="official",
            datasets={"ds0": DatasetTerms(epsilon=1e5, delta=1e-4, columns=COLUMNS)},
        )
    )
    request = Request(
        firm="firm0",
        dataset="ds0",
        purpose="purpose0",
        action=Action.QUERY,
        columns=(ColumnRef(name="income", use="aggregate"),),
        epsilon=0.01,
        delta=1e-9,
        min_group_size=10,
    )
    decide_s = reserve_s = commit_s = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        decision = authority.decide(request)
        t1 = time.perf_counter()
        reservation = authority.reserve(decision)
        t2 = time.perf_counter()
        authority.commit(reservation, f"result {i}".encode())
        t3 = time.perf_counter()
        decide_s, reserve_s, commit_s = decide_s + t1 - t0, reserve_s + t2 - t1, commit_s + t3 - t2
    start = time.perf_counter()
    authority.verify_ledger()
    verify_ledger_s = time.perf_counter() - start
    # Baseline: one durable one-row transaction on the same kind of connection.
    conn = connect(root / "bare-tx.db")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
        conn.execute("COMMIT")
    bare_s = time.perf_counter() - start
    return {
        "use_cycles_per_s": n / (decide_s + reserve_s + commit_s),
        "logged_decide_per_s": n / decide_s,
        "reserve_per_s": n / reserve_s,
        "commit_per_s": n / commit_s,
        "bare_durable_tx_per_s": n / bare_s,
        "verify_ledger_ms": verify_ledger_s * 1e3,
        "verify_ledger_log_size": authority.log.size,
    }


def _rows(n: int, offset: int = 0) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(offset)
    return [
        (
            "decision",
            {
                "firm": f"firm{rng.randrange(200)}",
                "dataset": f"ds{rng.randrange(20)}",
                "decision": "permit" if rng.random() < 0.8 else "deny",
                "grant_id": f"g{rng.randrange(200)}",
                "request_digest": f"{rng.getrandbits(256):064x}",
                "reasons": [{"code": "grant-covers-firm-and-dataset", "grant_id": "g1"}],
            },
        )
        for _ in range(n)
    ]


def bench_append(root: Path, n: int, batch: int) -> dict[str, Any]:
    rows = _rows(n)
    log = TransparencyLog(root / "append.db")
    start = time.perf_counter()
    for i in range(0, n, batch):
        log.append_many(rows[i : i + batch])
    append_s = time.perf_counter() - start
    # Baseline: the same encoded rows into a bare table, same batch size and durability.
    data = list(log.entries())
    conn = connect(root / "bare.db")
    conn.execute("CREATE TABLE t (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    start = time.perf_counter()
    for i in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t VALUES (?, ?)", enumerate(data[i : i + batch], i))
        conn.execute("COMMIT")
    bare_s = time.perf_counter() - start
    # Group commit: 16 threads each appending single entries durably.
    group = TransparencyLog(root / "group.db")
    per_thread = max(1, n // 16 // 4)

    def worker(t: int) -> None:
        for kind, fields in rows[t * per_thread : (t + 1) * per_thread]:
            group.append(kind, fields)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    group_s = time.perf_counter() - start
    # One thread, one entry per transaction: the worst case, for reference.
    single = TransparencyLog(root / "single.db")
    k = min(500, n)
    start = time.perf_counter()
    for kind, fields in rows[:k]:
        single.append(kind, fields)
    single_s = time.perf_counter() - start
    return {
        "append_per_s": n / append_s,
        "sqlite_insert_per_s": n / bare_s,
        "append_batch": batch,
        "append_group_commit_16_threads_per_s": 16 * per_thread / group_s,
        "append_single_thread_unbatched_per_s": k / single_s,
    }


def bench_large_log(root: Path, size: int) -> dict[str, Any]:
    key = load_or_create_signing_key(root / "keys")
    log = TransparencyLog(root / "large.db", key)
    start = time.perf_counter()
    step = 20_000
    template = _rows(step)
    for i in range(0, size, step):
        log.append_many(template[: min(step, size - i)])
    build_s = time.perf_counter() - start
    rng = random.Random(3)
    root_hash = log.root()
    proof_times, proof_cpu = [], []
    for _ in range(2000):
        index = rng.randrange(size)
        t0, c0 = time.perf_counter(), time.thread_time()
        log.inclusion_proof(index, size)
        proof_cpu.append(time.thread_time() - c0)
        proof_times.append(time.perf_counter() - t0)
    consistency_times = []
    for _ in range(200):
        first = rng.randrange(1, size)
        t0 = time.perf_counter()
        log.consistency_proof(first, size)
        consistency_times.append(time.perf_counter() - t0)
    export = root / "large.jsonl"
    start = time.perf_counter()
    log.export(export)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    result = verify_export(export, key.public_key())
    verify_s = time.perf_counter() - start
    assert result.root == root_hash
    return {
        "log_size": size,
        "build_s": build_s,
        "proof_ms_at_1m": _percentile(proof_times, 0.99) * 1e3,
        "proof_p50_ms": statistics.median(proof_times) * 1e3,
        "proof_cpu_p99_ms": _percentile(proof_cpu, 0.99) * 1e3,
        "consistency_proof_p99_ms": _percentile(consistency_times, 0.99) * 1e3,
        "export_s": export_s,
        "export_mb": export.stat().st_size / 1e6,
        "verify_s_at_1m": verify_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the decision benchmark")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("decisions", "release", "append", "log"),
        default=("decisions", "release", "append", "log"),
        help="run only these benchmarks",
    )
    parser.add_argument("--uses", type=int, default=300, help="decide/reserve/commit cycles")
    parser.add_argument("--appends", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--log-size", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-policies-", dir=args.dir))
    try:
        out: dict[str, Any] = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
            "sqlite": sqlite3.sqlite_version,
            "load_average_at_start": os.getloadavg()[0],
        }
        if "decisions" in args.only:
            out.update(bench_decisions_repeated(root, args.decisions, args.repeat))
        if "release" in args.only:
            out.update(bench_release(root, args.uses))
        if "append" in args.only:
            out.update(bench_append(root, args.appends, args.batch))
        if "log" in args.only:
            out.update(bench_large_log(root, args.log_size))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if "decisions" in args.only:
        out["decision_vs_bare_cedar"] = out["decision_p99_ms"] / out["bare_cedar_p99_ms"]
        out["decisions_per_cpu_s_vs_bare_cedar"] = (
            out["decisions_per_cpu_s"] / out["bare_cedar_per_cpu_s"]
        )
    if "append" in args.only:
        out["append_vs_sqlite"] = out["append_per_s"] / out["sqlite_insert_per_s"]
    if "release" in args.only:
        out["commit_vs_bare_tx"] = out["commit_per_s"] / out["bare_durable_tx_per_s"]
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    for name, value in out.items():
        print(f"{name:<40} {value:.4g}" if isinstance(value, float) else f"{name:<40} {value}")


if __name__ == "__main__":
    main()
