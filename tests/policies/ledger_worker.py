"""Subprocess used by the ledger tests (not a test module).

``race DB GRANT DATASET EPS GO_FILE``: print ``ready``, wait for GO_FILE, then reserve EPS
and commit until the budget is exhausted; print ``committed=N``.

``append DB N``: append N entries to the transparency log at DB.

``crash STATE_DIR``: loop decide -> reserve -> (mechanism) -> commit/release through the
authority forever, printing a line after each step, until killed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def race(db: str, grant_id: str, dataset: str, eps: float, go: str) -> None:
    from policies import BudgetExceededError, BudgetLedger, Loss

    ledger = BudgetLedger(Path(db))
    ledger.remaining(grant_id, dataset)  # connection open and warm
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    committed = n = 0
    while True:
        try:
            r = ledger.reserve(grant_id, dataset, f"proc-{os.getpid()}", Loss(eps, 0.0))
        except BudgetExceededError:
            break
        n += 1
        ledger.commit(r.reservation_id, hashlib.sha256(str(n).encode()).hexdigest())
        committed += 1
    print(f"committed={committed}", flush=True)


def crash(state_dir: str) -> None:
    from policy_helpers import NOW, query

    from policies import Authority, BudgetExceededError

    authority = Authority(Path(state_dir), clock=lambda: NOW)
    i = 0
    while True:
        i += 1
        decision = authority.decide(query(epsilon=0.01))
        if not decision.permit:
            print("denied", flush=True)
            time.sleep(0.01)
            continue
        try:
            reservation = authority.reserve(decision)
        except BudgetExceededError:
            print("exhausted", flush=True)
            continue
        print(f"reserved {reservation.reservation_id}", flush=True)
        time.sleep(0.002)  # the mechanism runs here
        released = f"result {i}".encode()
        if i % 4 == 0:
            authority.refund(reservation)
            print("refunded", flush=True)
        else:
            authority.commit(reservation, released)
            print("released", flush=True)


def append(db: str, n: int) -> None:
    from policies import TransparencyLog

    log = TransparencyLog(Path(db))
    for i in range(n):
        log.append("request", {"firm": f"proc-{os.getpid()}", "n": i})
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "append":
        append(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "race":
        race(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
    else:
        crash(sys.argv[2])
