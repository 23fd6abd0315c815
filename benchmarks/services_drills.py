"""Crash drills of the services benchmark: many firms race on shared grants with small caps
while the hub and the node are killed with ``kill -9`` and restarted; afterwards the hub's
state is checked: no account past its cap, one charge and one log entry per release, the
ledger matches the log (``sandbox audit check``) and the exported log verifies
(``sandbox audit export`` + ``sandbox audit verify``, which replays the budget)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.services_latency import EPSILON, SQL
from benchmarks.services_processes import PURPOSE, ROOT, build_world, start_system
from policies.authority import default_keys_dir
from sandbox.client import FirmClient
from sandbox.errors import ClientError, ClientPermissionDenied

#: Firm identities; several firm clients (threads) share each one's grant.
IDENTITIES = 40
GRANT_EPSILON = 0.5  # 10 queries at EPSILON 0.05 per grant
DATASET_EPSILON = 15.0  # below 40 x 0.5: the dataset's cap binds too
NODE_EPSILON = 100.0


def drill(root: Path, firms: int, restarts: int, settle_s: float = 1.5) -> dict[str, Any]:
    identities = [f"racer{i:03d}" for i in range(min(IDENTITIES, firms))]
    world = build_world(
        root,
        identities,
        grant_epsilon=GRANT_EPSILON,
        dataset_epsilon=DATASET_EPSILON,
        node_epsilon=NODE_EPSILON,
        per_use=EPSILON,
    )
    system = start_system(world)
    stop = threading.Event()
    released: list[int] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def race(firm: str) -> None:
        with FirmClient(world.profile(firm, system.hub.port), timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.query(SQL, EPSILON, purpose=PURPOSE)
                except ClientPermissionDenied:
                    with lock:
                        counts["denied"] += 1
                    return  # the grant or the dataset is spent
                except ClientError as exc:
                    with lock:
                        counts[exc.code or "error"] += 1
                    time.sleep(0.05)  # hub or node down: try again
                    continue
                with lock:
                    released.append(answer.log_index)

    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=race, args=(identities[i % len(identities)],), daemon=True)
        for i in range(firms)
    ]
    for t in threads:
        t.start()
    kills = []
    try:
        for _ in range(restarts):
            time.sleep(settle_s)
            system.hub.kill9()
            kills.append({"killed": "hub", "restart_s": round(system.hub.start(), 2)})
            time.sleep(settle_s)
            system.node.kill9()
            kills.append({"killed": "node", "restart_s": round(system.node.start(), 2)})
        deadline = time.perf_counter() + 60
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.perf_counter()))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        system.stop()
    out: dict[str, Any] = {
        "firms": firms,
        "firm_identities": len(identities),
        "grant_epsilon": GRANT_EPSILON,
        "dataset_epsilon": DATASET_EPSILON,
        "kills": kills,
        "releases_to_firms": len(released),
        "client_outcomes": dict(counts),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.update(check_state(world.state, world.node_state, released))
    return out


def check_state(state: Path, node_state: Path, released: list[int]) -> dict[str, Any]:
    """The invariants, read from the hub's and the node's own stores and the exported log."""
    db = sqlite3.connect(state / "state.db")
    over = db.execute(
        "SELECT scope, grant_id, dataset FROM accounts WHERE basic_eps > eps_cap"
    ).fetchall()
    by_state = dict(db.execute("SELECT state, COUNT(*) FROM reservations GROUP BY state"))
    committed = dict(
        db.execute(
            "SELECT reservation_id, release_digest FROM reservations WHERE state = 'committed'"
        ).fetchall()
    )
    db.close()
    export = state.parent / "drill-export.jsonl"
    audit = [sys.executable, "-m", "sandbox", "audit"]
    # the regulator's memory of this log lives with the run, not in the user's config
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), SANDBOX_VERIFIER_HOME=str(state.parent / "verifier")
    )
    check = subprocess.run(
        [*audit, "check", "--state", str(state)], env=env, capture_output=True, check=False
    )
    subprocess.run([*audit, "export", str(export), "--state", str(state)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    public = default_keys_dir(state) / "log-public.pem"
    verify = subprocess.run(
        [*audit, "verify", str(export), "--public-key", str(public)],
        env=env,
        capture_output=True,
        check=False,
    )
    release_entries: Counter[str] = Counter()
    indexes = set()
    with open(export, "rb") as f:
        f.readline()
        for line in f:
            body = json.loads(line)
            if isinstance(body, dict) and body.get("kind") == "release":
                release_entries[body["reservation_id"]] += 1
                indexes.add(body.get("index"))
    node_db = sqlite3.connect(node_state / "guard.db")
    node_over = node_db.execute(
        "SELECT d.dataset FROM dataset_spend d JOIN dataset_caps c USING (dataset) "
        "WHERE d.epsilon > c.epsilon"
    ).fetchall()
    node_db.close()
    checks = {
        "no_account_over_cap": not over,
        "node_within_its_cap": not node_over,
        "one_log_entry_per_release": set(release_entries) == set(committed)
        and all(n == 1 for n in release_entries.values()),
        "every_answer_is_a_logged_release": set(released) <= indexes
        and len(set(released)) == len(released),
        "audit_check_ok": check.returncode == 0,
        "log_verifies_and_replays": verify.returncode == 0,
    }
    return {
        "reservations": by_state,
        "release_entries": sum(release_entries.values()),
        "checks": checks,
        "all_ok": all(checks.values()),
        "audit_check": (check.stdout or check.stderr).decode().strip()[-300:],
        "audit_verify": (verify.stdout or verify.stderr).decode().strip()[-300:],
    }
