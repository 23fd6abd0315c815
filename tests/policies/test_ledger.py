"""The privacy-budget ledger: composition, caps, races across threads and processes, crashes."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from policies import (
    Authority,
    BudgetExceededError,
    BudgetLedger,
    InvalidRequestError,
    Loss,
    ReservationState,
    ReservationStateError,
    compose,
    verify_export,
    zcdp_to_epsilon,
)
from policies.ledger import dataset_account, grant_account

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
DIGEST = "ab" * 32


@pytest.fixture
def ledger(tmp_path: Path) -> BudgetLedger:
    ledger = BudgetLedger(tmp_path / "ledger.db")
    ledger.open_account(grant_account("g", "tax"), 3.0, 1e-6)
    ledger.open_account(dataset_account("tax"), 10.0, 1e-5)
    return ledger


def test_basic_composition_adds_epsilon_and_delta() -> None:
    total = compose([Loss(0.5, 1e-7), Loss(0.25, 2e-7), Loss(1.0, 0.0)])
    assert total.epsilon == pytest.approx(1.75)
    assert total.delta == pytest.approx(3e-7)


def test_zcdp_composition_adds_rho_then_converts() -> None:
    # Bun & Steinke: rho-zCDP => (rho + 2 sqrt(rho ln(1/delta)), delta)-DP
    assert zcdp_to_epsilon(0.1, 1e-6) == pytest.approx(0.1 + 2 * math.sqrt(0.1 * math.log(1e6)))
    uses = [Loss(delta=1e-7, rho=0.01)] * 10
    total = compose(uses)
    assert total.rho == pytest.approx(0.1)
    assert total.delta == pytest.approx(1e-6)
    assert total.epsilon == pytest.approx(zcdp_to_epsilon(0.1, 1e-6))
    separately = sum(zcdp_to_epsilon(0.01, 1e-7) for _ in uses)
    assert total.epsilon < separately / 3  # composing in zCDP is far tighter


def test_mixed_composition(ledger: BudgetLedger) -> None:
    ledger.reserve("g", "tax", "acme", Loss(0.5, 1e-7))
    ledger.reserve("g", "tax", "acme", Loss(0.0, 1e-7, rho=0.01))
    ledger.reserve("g", "tax", "acme", Loss(0.0, 1e-7, rho=0.02))
    status = ledger.remaining("g", "tax").grant
    expected = compose([Loss(0.5, 1e-7), Loss(0, 1e-7, 0.01), Loss(0, 1e-7, 0.02)])
    assert status.epsilon_spent == pytest.approx(expected.epsilon, abs=2e-6)
    assert status.epsilon_spent >= expected.epsilon  # rounding is always against the firm
    assert status.delta_spent == pytest.approx(3e-7)
    assert status.rho == pytest.approx(0.03)


def test_reserve_commit_refund_and_remaining_explains(ledger: BudgetLedger) -> None:
    a = ledger.reserve("g", "tax", "acme", Loss(1.0, 1e-7))
    b = ledger.reserve("g", "tax", "acme", Loss(1.0, 1e-7))
    ledger.commit(a.reservation_id, DIGEST)
    ledger.refund(b.reservation_id)
    rem = ledger.remaining("g", "tax")
    assert rem.epsilon == pytest.approx(2.0)
    assert rem.delta == pytest.approx(9e-7)
    assert ledger.reservation(a.reservation_id).state == ReservationState.COMMITTED
    assert ledger.reservation(a.reservation_id).release_digest == DIGEST
    text = rem.explain()
    assert "grant:g:tax: spent epsilon 1 of 3" in text
    assert "1 released, 0 pending (charged), 1 refunded" in text
    assert "dataset:tax: spent epsilon 1 of 10" in text
    assert ledger.audit() == []


def test_over_cap_is_refused_with_the_account_and_charges_nothing(ledger: BudgetLedger) -> None:
    ledger.reserve("g", "tax", "acme", Loss(2.5, 0.0))
    with pytest.raises(BudgetExceededError, match=r"grant:g:tax has epsilon 0.5 left of 3"):
        ledger.reserve("g", "tax", "acme", Loss(0.6, 0.0))
    with pytest.raises(BudgetExceededError, match="delta"):
        ledger.reserve("g", "tax", "acme", Loss(0.1, 2e-6))
    assert ledger.remaining("g", "tax").epsilon == pytest.approx(0.5)
    assert len(ledger.reservations()) == 1


def test_dataset_wide_cap_binds_across_grants(ledger: BudgetLedger) -> None:
    ledger.open_account(dataset_account("tax"), 4.0, 1e-5)
    ledger.open_account(grant_account("g2", "tax"), 3.0, 1e-6)
    ledger.reserve("g", "tax", "acme", Loss(3.0, 0.0))
    with pytest.raises(BudgetExceededError, match="dataset:tax has epsilon 1 left of 4"):
        ledger.reserve("g2", "tax", "beta", Loss(1.5, 0.0))
    ledger.reserve("g2", "tax", "beta", Loss(1.0, 0.0))


def test_double_commit_and_refund_after_commit_are_refused(ledger: BudgetLedger) -> None:
    r = ledger.reserve("g", "tax", "acme", Loss(1.0, 0.0))
    ledger.commit(r.reservation_id, DIGEST)
    with pytest.raises(ReservationStateError, match="already committed"):
        ledger.commit(r.reservation_id, DIGEST)
    with pytest.raises(ReservationStateError, match="already committed"):
        ledger.refund(r.reservation_id)
    assert ledger.remaining("g", "tax").epsilon == pytest.approx(2.0)


def test_bad_input_costs_nothing(ledger: BudgetLedger) -> None:
    with pytest.raises(InvalidRequestError, match="no budget account"):
        ledger.reserve("nope", "tax", "acme", Loss(1.0, 0.0))
    with pytest.raises(InvalidRequestError, match="invalid privacy loss"):
        ledger.reserve("g", "tax", "acme", Loss(-1.0, 0.0))
    with pytest.raises(InvalidRequestError, match="delta > 0"):
        ledger.reserve("g", "tax", "acme", Loss(0.0, 0.0, rho=0.1))
    r = ledger.reserve("g", "tax", "acme", Loss(1.0, 0.0))
    with pytest.raises(InvalidRequestError, match="SHA-256"):
        ledger.commit(r.reservation_id, "not-a-digest")
    assert ledger.reservation(r.reservation_id).state == ReservationState.RESERVED
    assert ledger.remaining("g", "tax").epsilon == pytest.approx(2.0)
    assert ledger.audit() == []


def test_unresolved_reservation_stays_charged_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    first = BudgetLedger(path)
    first.open_account(grant_account("g", "tax"), 1.0, 0.0)
    first.open_account(dataset_account("tax"), 1.0, 0.0)
    first.reserve("g", "tax", "acme", Loss(0.75, 0.0))
    del first
    again = BudgetLedger(path)
    assert again.remaining("g", "tax").epsilon == pytest.approx(0.25)
    assert again.remaining("g", "tax").grant.pending == 1


def test_50_threads_and_4_processes_never_overspend(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    ledger = BudgetLedger(db)
    ledger.open_account(grant_account("g", "tax"), 4.0, 0.0)
    ledger.open_account(dataset_account("tax"), 100.0, 0.0)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "ledger_worker.py"),
                "race",
                str(db),
                "g",
                "tax",
                "0.01",
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    # The last thread to arrive releases the processes too: all 54 start together (the
    # processes used to take every use while 50 threads were still being started).
    barrier = threading.Barrier(50, action=lambda: go.write_text("go"))
    committed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def spend(t: int) -> None:
        mine = 0
        try:
            barrier.wait()
            while True:
                try:
                    r = ledger.reserve("g", "tax", f"thread-{t}", Loss(0.01, 0.0))
                except BudgetExceededError:
                    break
                ledger.commit(r.reservation_id, DIGEST)
                mine += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            committed.append(mine)

    threads = [threading.Thread(target=spend, args=(t,)) for t in range(50)]
    for p in procs:  # every process has its ledger open before anyone starts
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert errors == []
    from_procs = [int(o.strip().split("=")[1]) for o in outputs]
    total = sum(committed) + sum(from_procs)
    # 4.0 / 0.01 = 400 uses fit: exactly 400 commits means no overspend and no lost update.
    assert total == 400
    rows = ledger.reservations("g")
    assert sum(r.epsilon for r in rows if r.state == ReservationState.COMMITTED) <= 4.0 + 1e-9
    assert sum(1 for r in rows if r.state == ReservationState.RESERVED) == 0
    assert sum(from_procs) > 0 and sum(committed) > 0, "threads and processes did not race"
    assert ledger.audit() == []


def test_kill_9_between_reserve_and_release_never_leaves_a_release_uncharged(
    tmp_path: Path,
) -> None:
    from policy_helpers import NOW, credit_grant, tax_dataset

    state = tmp_path / "state"
    setup = Authority(state, clock=lambda: NOW)
    setup.register_dataset(tax_dataset())
    setup.create_grant(credit_grant())
    earlier = setup.tree_head()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    rng = random.Random(7)
    killed_pending = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "ledger_worker.py"), "crash", str(state)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        steps = rng.randint(3, 30)
        last = ""
        for _ in range(steps):
            last = proc.stdout.readline()
            assert last, "worker died on its own"
        if rng.random() < 0.5:  # half the time kill right after a reservation
            while not last.startswith("reserved"):
                last = proc.stdout.readline()
        else:
            time.sleep(rng.random() * 0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

        after = Authority(state, clock=lambda: NOW)
        assert after.ledger.audit() == []
        by_id = {r.reservation_id: r for r in after.ledger.reservations()}
        releases = after.log.search(kind="release", limit=10**6)
        for entry in releases:
            r = by_id[entry["reservation_id"]]
            assert r.state == ReservationState.COMMITTED
            assert r.release_digest == entry["release_sha256"]
        # ... and no committed release lacks its log entry (one transaction for both)
        committed = {r for r, res in by_id.items() if res.state == ReservationState.COMMITTED}
        assert committed == {e["reservation_id"] for e in releases}
        pending = [r for r in by_id.values() if r.state == ReservationState.RESERVED]
        killed_pending = max(killed_pending, len(pending))
        status = after.remaining("g-credit", "tax").grant
        charged = sum(r.epsilon for r in by_id.values() if r.state != ReservationState.REFUNDED)
        assert status.epsilon_spent == pytest.approx(charged)
        assert status.pending == len(pending)
        export = tmp_path / "export.jsonl"
        after.export(export)
        verify_export(export, after.public_key, previous=earlier)
    assert killed_pending >= 1, "no kill landed between reserve and release"


def test_check_sees_spending_by_this_and_other_connections(
    ledger: BudgetLedger, tmp_path: Path
) -> None:
    loss = Loss(1.0, 0.0)
    assert ledger.check("g", "tax", loss) is None
    ledger.reserve("g", "tax", "acme", Loss(1.5, 0.0))  # same thread, same connection
    assert ledger.check("g", "tax", loss) is None
    other = BudgetLedger(tmp_path / "ledger.db")  # another connection, as another process
    other.reserve("g", "tax", "acme", Loss(1.0, 0.0))
    assert "grant:g:tax has epsilon 0.5 left" in (ledger.check("g", "tax", loss) or "")
    ledger.refund(ledger.reservations("g")[0].reservation_id)
    assert ledger.check("g", "tax", loss) is None
