"""`sandbox audit export|verify|show` via CliRunner, mounted the way sandbox/cli.py does."""

from __future__ import annotations

import json
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
