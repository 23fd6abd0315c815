"""A poisoned record isolates: an unreadable grant or dataset policy in the store denies only
its own uses, every other firm keeps deciding, and the bad grant can still be revoked."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policies"))

from policy_helpers import NOW, credit_grant, query, tax_dataset  # noqa: E402

from policies import Authority, DatasetTerms  # noqa: E402


def db_with(state: Path, table: str) -> Path:
    for path in sorted(state.glob("*.db")):
        conn = sqlite3.connect(path)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
                return path
        finally:
            conn.close()
    raise AssertionError(f"no database with table {table}")


def edit(state: Path, table: str, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db_with(state, table))
    try:
        conn.execute(sql, args)
        conn.execute("UPDATE revision SET n = n + 1")
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.register_dataset(tax_dataset(dataset_id="health"))
    a.create_grant(credit_grant())
    terms = {"tax": DatasetTerms(epsilon=3.0, delta=1e-6, columns={"income": "aggregate_only"})}
    a.create_grant(credit_grant(grant_id="g-bad", firm="mallory", datasets=terms))
    return a


def _poison_grant(state: Path, body: str) -> None:
    edit(state, "grants", "UPDATE grants SET body = ? WHERE grant_id = 'g-bad'", body)


@pytest.mark.parametrize(
    "body",
    [
        '{"not": "a grant"',  # corrupted JSON
        None,  # a valid grant body with epsilon_per_use 1e999 (reads as infinity)
    ],
)
def test_unreadable_grant_denies_only_itself_and_can_be_revoked(
    authority: Authority, body: str | None
) -> None:
    if body is None:
        good = authority.registry.grant("g-bad").model_dump_json()
        body = good.replace('"epsilon_per_use":1.0', '"epsilon_per_use":1e999')
        assert body != good
    _poison_grant(authority.state_dir, body)
    assert authority.decide(query()).permit  # another firm is unaffected
    d = authority.decide(query(firm="mallory", grant_id="g-bad", columns=query().columns[:1]))
    assert not d.permit
    assert {r.code for r in d.reasons} == {"grant-unreadable"}
    authority.revoke_grant("g-bad", "王芳", "record corrupted")
    d = authority.decide(query(firm="mallory", grant_id="g-bad"))
    assert {r.code for r in d.reasons} == {"grant-revoked"}
    assert authority.decide(query()).permit
    assert authority.log.search(kind="revocation")[-1]["grant_id"] == "g-bad"


def test_unreadable_dataset_policy_denies_only_that_dataset(authority: Authority) -> None:
    edit(
        authority.state_dir,
        "datasets",
        "UPDATE datasets SET body = '{\"epsilon_cap\": 1e999' WHERE dataset_id = 'health'",
    )
    assert authority.decide(query()).permit
    d = authority.decide(query(dataset="health"))
    assert {r.code for r in d.reasons} == {"dataset-unreadable"}
