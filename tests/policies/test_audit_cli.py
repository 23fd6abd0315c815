"""`sandbox audit export|verify|show` via CliRunner, mounted the way sandbox/cli.py does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from policy_helpers import query
from typer.testing import CliRunner

from policies import Authority, ColumnRef, default_keys_dir
from sandbox.audit_cli import audit_app

app = typer.Typer()
app.add_typer(audit_app, name="audit")
runner = CliRunner()


@pytest.fixture
def state(authority: Authority) -> Path:
    authority.decide(query())
    authority.decide(query(firm="acme", purpose="marketing"))
    authority.decide(query(columns=(ColumnRef(name="id_card_number", use="filter"),)))
    d = authority.decide(query())
    authority.commit(authority.reserve(d), b'{"mean_income": 5321.7}')
    return authority.state_dir


def test_export_then_verify(state: Path, tmp_path: Path) -> None:
    out, head = tmp_path / "log.jsonl", tmp_path / "head.json"
    result = runner.invoke(
        app, ["audit", "export", str(out), "--state", str(state), "--tree-head", str(head)]
    )
    assert result.exit_code == 0, result.output
    assert "exported" in result.output
    key = default_keys_dir(state) / "log-public.pem"
    result = runner.invoke(app, ["audit", "verify", str(out), "--public-key", str(key)])
    assert result.exit_code == 0, result.output
    size = json.loads(head.read_text())["size"]
    assert f"OK: {size} entries" in result.output


def test_verify_against_an_earlier_head_and_detect_tampering(
    authority: Authority, state: Path, tmp_path: Path
) -> None:
    key = default_keys_dir(state) / "log-public.pem"
    first, head = tmp_path / "first.jsonl", tmp_path / "head.json"
    runner.invoke(
        app, ["audit", "export", str(first), "--state", str(state), "--tree-head", str(head)]
    )
    authority.decide(query())
    second = tmp_path / "second.jsonl"
    assert (
        runner.invoke(app, ["audit", "export", str(second), "--state", str(state)]).exit_code == 0
    )
    ok = runner.invoke(
        app, ["audit", "verify", str(second), "--public-key", str(key), "--previous", str(head)]
    )
    assert ok.exit_code == 0, ok.output
    assert "extends the earlier tree head" in ok.output

    lines = second.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"acme", b"acne")
    second.write_bytes(b"".join(lines))
    bad = runner.invoke(app, ["audit", "verify", str(second), "--public-key", str(key)])
    assert bad.exit_code == 1
    assert "FAILED" in bad.output and "signed root" in bad.output


def test_verify_reports_a_missing_key_clearly(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    runner.invoke(app, ["audit", "export", str(out), "--state", str(state)])
    result = runner.invoke(app, ["audit", "verify", str(out), "--public-key", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "cannot read public key" in result.output


def test_show_filters(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_STATE", str(state))
    result = runner.invoke(app, ["audit", "show", "--decision", "deny", "--json"])
    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.output.splitlines()]
    assert len(entries) == 2
    assert {e["reasons"][0]["code"] for e in entries} == {
        "purpose-not-granted",
        "identity-column-never-usable",
    }
    result = runner.invoke(app, ["audit", "show", "--kind", "release", "--firm", "acme"])
    assert result.exit_code == 0
    assert "release_sha256=" in result.output and "(1 entries)" in result.output
    result = runner.invoke(app, ["audit", "show", "--since", "2030-01-01"])
    assert "(0 entries)" in result.output
    result = runner.invoke(app, ["audit", "show", "--dataset", "tax", "--kind", "decision"])
    assert "(4 entries)" in result.output


def test_show_rejects_bad_input(state: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "show", "--state", str(state), "--decision", "maybe"])
    assert result.exit_code == 2 and "permit or deny" in result.output
    result = runner.invoke(app, ["audit", "show", "--state", str(state), "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO time" in result.output
    result = runner.invoke(app, ["audit", "show", "--state", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no transparency log" in result.output


def _export(state: Path, out: Path) -> Path:
    result = runner.invoke(app, ["audit", "export", str(out), "--state", str(state)])
    assert result.exit_code == 0, result.output
    return default_keys_dir(state) / "log-public.pem"


def test_verify_pins_by_default_and_forget_starts_over(
    authority: Authority, state: Path, tmp_path: Path
) -> None:
    key = _export(state, tmp_path / "a.jsonl")
    first = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "a.jsonl"), "--public-key", str(key)]
    )
    assert first.exit_code == 0 and "first verification of log 'default'" in first.output
    authority.decide(query())
    _export(state, tmp_path / "b.jsonl")
    later = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "b.jsonl"), "--public-key", str(key)]
    )
    assert later.exit_code == 0 and "(2 new)" in later.output, later.output
    older = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "a.jsonl"), "--public-key", str(key)]
    )
    assert older.exit_code == 1 and "rolled back" in older.output
    other = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "a.jsonl"), "--public-key", str(key), "--log", "x"]
    )
    assert other.exit_code == 0, other.output  # another name, another memory
    forgot = runner.invoke(app, ["audit", "forget"])
    assert forgot.exit_code == 0 and "forgot log 'default'" in forgot.output
    again = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "a.jsonl"), "--public-key", str(key)]
    )
    assert again.exit_code == 0 and "first verification" in again.output


def test_prove_and_inclusion_files_verify_offline(
    authority: Authority, state: Path, tmp_path: Path
) -> None:
    key = default_keys_dir(state) / "log-public.pem"
    size = authority.log.size
    proved = runner.invoke(
        app, ["audit", "prove", "--from", "3", "--to", str(size), "--state", str(state)]
    )
    assert proved.exit_code == 0, proved.output
    body = json.loads(proved.output)
    assert body["proof"] == "consistency" and body["first"]["size"] == 3
    assert body["second"]["size"] == size
    (tmp_path / "c.json").write_text(proved.output)
    ok = runner.invoke(app, ["audit", "verify", str(tmp_path / "c.json"), "--public-key", str(key)])
    assert ok.exit_code == 0 and f"log of {size} entries" in ok.output, ok.output

    included = runner.invoke(app, ["audit", "inclusion", "4", "--state", str(state)])
    assert included.exit_code == 0, included.output
    body = json.loads(included.output)
    assert json.loads(body["entry"])["index"] == 4 and body["tree_head"]["size"] == size
    (tmp_path / "i.json").write_text(included.output)
    ok = runner.invoke(app, ["audit", "verify", str(tmp_path / "i.json"), "--public-key", str(key)])
    assert ok.exit_code == 0 and "entry 4" in ok.output, ok.output

    body["entry"] = body["entry"].replace("acme", "acne")  # the entry is not the logged one
    (tmp_path / "bad.json").write_text(json.dumps(body))
    bad = runner.invoke(
        app, ["audit", "verify", str(tmp_path / "bad.json"), "--public-key", str(key)]
    )
    assert bad.exit_code == 1 and bad.output.startswith("FAILED: the proof does not hold")
    wrong = runner.invoke(
        app, ["audit", "prove", "--from", "9", "--to", "2", "--state", str(state)]
    )
    assert wrong.exit_code == 2 and "a log only grows" in wrong.output


def test_show_an_export_offline_with_epsilon_purpose_and_grant(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    key = _export(state, out)
    shutil.rmtree(state)  # offline: the state is gone
    result = runner.invoke(
        app, ["audit", "show", "--export", str(out), "--public-key", str(key), "--kind", "release"]
    )
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()[:2]
    assert "epsilon" in header and "purpose" in header and "grant" in header
    assert "0.5" in row and "credit-risk-statistics" in row and "g-credit" in row
    assert "release_sha256=" in row and "(1 entries)" in result.output
    denied = runner.invoke(
        app, ["audit", "show", "--export", str(out), "--public-key", str(key), "--decision", "deny"]
    )
    assert "(2 entries)" in denied.output and "marketing" in denied.output
    out.write_bytes(out.read_bytes().replace(b"acme", b"acne"))
    tampered = runner.invoke(app, ["audit", "show", "--export", str(out), "--public-key", str(key)])
    assert tampered.exit_code == 1 and tampered.output.startswith("FAILED: ")


def test_show_rejects_an_unknown_kind(state: Path) -> None:
    result = runner.invoke(app, ["audit", "show", "--state", str(state), "--kind", "releases"])
    assert result.exit_code == 2
    assert "'releases' is not an entry kind" in result.output and "release," in result.output


def test_show_from_the_state_names_purpose_and_epsilon(state: Path) -> None:
    result = runner.invoke(app, ["audit", "show", "--state", str(state), "--kind", "release"])
    assert result.exit_code == 0
    row = result.output.splitlines()[1]
    assert "0.5" in row and "credit-risk-statistics" in row and "g-credit" in row


def test_entries_name_purpose_epsilon_and_the_sql(authority: Authority) -> None:
    sql = "SELECT region, AVG(income) FROM tax WHERE age > 30 GROUP BY region " + " " * 20_000
    decided = authority.decide(query(sql=sql))
    request, decision = (
        json.loads(authority.log.entry(i)) for i in (decided.log_index - 1, decided.log_index)
    )
    assert request["kind"] == "request" and request["request"]["sql"] == sql
    assert decision["purpose"] == "credit-risk-statistics" and decision["grant_id"] == "g-credit"
    assert (decision["epsilon"], decision["delta"]) == (0.5, 1e-8)
    with pytest.raises(ValueError, match="100000"):
        query(sql="S" * 100_001)
