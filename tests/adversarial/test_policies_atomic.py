"""The budget ledger and the log are one record: a process killed between the ledger change
and the log write leaves neither, and a ledger reset or edited behind the log's back is
detected at start-up and by `sandbox audit check`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

HERE = Path(__file__).resolve().parent
POLICY_TESTS = HERE.parent / "policies"
ROOT = HERE.parents[1]
sys.path.insert(0, str(POLICY_TESTS))

from policy_helpers import NOW, credit_grant, query, tax_dataset  # noqa: E402

from policies import Authority, LogIntegrityError, ReservationState  # noqa: E402

# A worker that dies (as with kill -9: no cleanup, no rollback) at the moment the release
# entry is about to be written, after the reservation was made.
WORKER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from policy_helpers import NOW, query
    import policies.log as log_module
    real = log_module.encode_entry
    def dying(index, ts_ms, kind, fields):
        if kind == "release":
            os._exit(9)
        return real(index, ts_ms, kind, fields)
    log_module.encode_entry = dying
    from policies import Authority
    authority = Authority(Path(sys.argv[1]), clock=lambda: NOW)
    reservation = authority.reserve(authority.decide(query()))
    print(reservation.reservation_id, flush=True)
    authority.commit(reservation, b'{"mean_income": 5321.7}')
    """
)


def db_with(state: Path, table: str) -> Path:
    for path in sorted(state.glob("*.db")):
        conn = sqlite3.connect(path)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                return path
        finally:
            conn.close()
    raise AssertionError(f"no database with table {table}")


def run_sql(state: Path, table: str, *statements: str) -> None:
    conn = sqlite3.connect(db_with(state, table))
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant())
    for i in range(3):
        a.commit(a.reserve(a.decide(query(epsilon=0.5))), f"result {i}".encode())
    a.reserve(a.decide(query(epsilon=0.25)))  # one pending (charged) reservation
    return a.state_dir


def test_death_before_the_release_entry_leaves_no_unlogged_release(state: Path) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{POLICY_TESTS}"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(state), str(POLICY_TESTS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 9, proc.stderr
    rid = proc.stdout.strip()
    after = Authority(state, clock=lambda: NOW)
    released = {e["reservation_id"] for e in after.log.search(kind="release", limit=10**6)}
    committed = {
        r.reservation_id
        for r in after.ledger.reservations()
        if r.state == ReservationState.COMMITTED
    }
    assert committed == released  # no committed release without its log entry
    assert rid not in committed
    assert after.ledger.reservation(rid).state == ReservationState.RESERVED  # still charged


@pytest.mark.parametrize(
    "statements",
    [
        (  # reset: the reservations and the spend forgotten
            "DELETE FROM reservations",
            "UPDATE accounts SET basic_eps = 0, basic_delta = 0, n_reserved = 0, n_committed = 0",
        ),
        ("UPDATE accounts SET eps_cap = eps_cap * 100",),  # a cap raised behind the log
        ("UPDATE reservations SET state = 'refunded' WHERE state = 'reserved'",),
    ],
    ids=["reset", "raised-cap", "forged-refund"],
)
def test_a_reset_or_edited_ledger_is_detected_at_start_up(
    state: Path, statements: tuple[str, ...]
) -> None:
    run_sql(state, "reservations", *statements)
    with pytest.raises(LogIntegrityError, match="does not match the transparency log"):
        Authority(state, clock=lambda: NOW)


def test_audit_check_reports_an_edited_ledger(state: Path) -> None:
    from sandbox.audit_cli import audit_app

    app = typer.Typer()
    app.add_typer(audit_app, name="audit")
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "check", "--state", str(state)])
    assert ok.exit_code == 0, ok.output
    run_sql(state, "reservations", "DELETE FROM reservations WHERE state = 'committed'")
    bad = runner.invoke(app, ["audit", "check", "--state", str(state)])
    assert bad.exit_code == 1
    assert bad.output.startswith("FAILED: ") and bad.output.count("\n") == 1
