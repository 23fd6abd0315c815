"""The role CLIs against a real hub and node over mTLS: firm, department and regulator
commands (tables and --json), refusals as one error line, profiles never from arguments, and
a real `sandbox query` process that loads no torch, Flower, OpenDP or Polars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.credentials import Principal, issue_certificate, load_ca

from .conftest import PURPOSE, SQL, Setup

runner = CliRunner()


def _profile(setup: Setup, tmp: Path, role: str, name: str) -> Path:
    stem = setup.pki / f"{role}-{name}"
    if not Path(f"{stem}.pem").exists():
        issue_certificate(load_ca(setup.pki), Principal(role, name))  # type: ignore[arg-type]
    path = tmp / f"{role}-{name}.toml"
    path.write_text(
        f'hub = "127.0.0.1:{setup.hub.port}"\nca = "{setup.pki / "ca.pem"}"\n'
        f'cert = "{stem}.pem"\nkey = "{stem}-key.pem"\n'
    )
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def test_firm_commands(setup: Setup, tmp_path: Path) -> None:
    firm = str(_profile(setup, tmp_path, "firm", "acme"))
    out = _run("datasets", "--profile", firm, "--json")
    assert out.exit_code == 0, out.output
    assert [d["name"] for d in json.loads(out.stdout)] == ["pums"]
    assert "pums" in _run("datasets", "--profile", firm).stdout
    q = _run("query", SQL, "--epsilon", "0.1", "--purpose", PURPOSE, "--profile", firm, "--json")
    assert q.exit_code == 0, q.output
    answer = json.loads(q.stdout)
    assert answer["grant_id"] == "g-acme" and answer["outputs"] == ["sex", "n"]
    table = _run("query", SQL, "--epsilon", "0.1", "--purpose", PURPOSE, "--profile", firm)
    assert table.exit_code == 0 and "spent epsilon 0.1" in table.stdout
    budget = _run("budget", "--grant", "g-acme", "--dataset", "pums", "--profile", firm, "--json")
    assert json.loads(budget.stdout)["grant"]["committed"] >= 2
    assert "may still spend" in _run("budget", "--grant", "g-acme", "--profile", firm).stdout
    too_much = _run("query", SQL, "--epsilon", "50", "--purpose", PURPOSE, "--profile", firm)
    assert too_much.exit_code == 2
    assert too_much.stderr.count("\n") == 1 and too_much.stderr.startswith("error: ")


def test_firm_requests_access(setup: Setup, tmp_path: Path) -> None:
    firm = str(_profile(setup, tmp_path, "firm", "acme"))
    args = ["--datasets", "pums", "--columns", "sex=group_by", "--columns", "*=aggregate_only"]
    args += ["--purpose", PURPOSE, "--legal-basis", "art. 13", "--epsilon", "1"]
    args += ["--epsilon-per-use", "0.5", "--min-group-size", "5"]
    made = _run("request", *args, "--until", "2099-01-01", "--profile", firm, "--json")
    assert made.exit_code == 0, made.output
    body = json.loads(made.stdout)
    assert body["state"] == "pending" and body["firm"] == "acme"
    assert body["terms"]["datasets"]["pums"]["columns"]["sex"] == "group_by"
    bad = _run("request", "--datasets", "pums", "--columns", "sex", "--profile", firm)
    assert bad.exit_code == 2 and "COLUMN=RULE" in bad.stderr
    listed = _run("requests", "--profile", firm, "--json")
    if listed.exit_code == 0:  # served once ListAccessRequests is on the hub
        assert body["request_id"] in [r["request_id"] for r in json.loads(listed.stdout)]
    else:
        assert listed.stderr.startswith("error: ") and listed.stderr.count("\n") == 1


def test_department_commands_and_role_refusal(setup: Setup, tmp_path: Path) -> None:
    firm = str(_profile(setup, tmp_path, "firm", "acme"))
    refused = _run("dept", "approve", "r-1", "--profile", firm)
    assert refused.exit_code == 2
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    dept = str(_profile(setup, tmp_path, "department", "census"))
    pending = _run("dept", "requests", "--profile", dept, "--json")
    assert pending.exit_code == 0, pending.output
    assert json.loads(pending.stdout) == []
    budgets = _run("dept", "budget", "--profile", dept, "--json")
    assert budgets.exit_code == 0 and isinstance(json.loads(budgets.stdout), list)


def test_regulator_reads_and_exports_the_hub_log(setup: Setup, tmp_path: Path) -> None:
    reg = str(_profile(setup, tmp_path, "regulator", "csrc"))
    key = tmp_path / "log-public.pem"
    from cryptography.hazmat.primitives import serialization

    key.write_bytes(
        setup.authority.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    head = _run("audit", "head", "--public-key", str(key), "--profile", reg, "--json")
    assert head.exit_code == 0, head.output
    assert json.loads(head.stdout)["size"] >= 1
    assert (
        "signature verified"
        in _run("audit", "head", "--public-key", str(key), "--profile", reg).stdout
    )
    entries = _run("audit", "entries", "--profile", reg)
    assert entries.exit_code == 0 and "entries; next" in entries.stdout
    proof = _run("audit", "proof", "0", "--public-key", str(key), "--profile", reg, "--json")
    assert proof.exit_code == 0 and json.loads(proof.stdout)["verified"] is True
    out = tmp_path / "log.jsonl"
    exported = _run(
        "audit", "export", str(out), "--hub", "--public-key", str(key), "--profile", reg
    )
    assert exported.exit_code == 0, exported.output
    verified = _run("audit", "verify", str(out), "--public-key", str(key))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("OK: ")


def test_no_profile_is_a_clear_error_and_no_secret_option(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "datasets"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: no hub address") and result.stderr.count("\n") == 1
    for secret in ("--api-key", "--key", "--cert", "--password"):
        assert secret not in _run("query", "--help").stdout
        assert _run("datasets", secret, "x").exit_code != 0


def test_query_process_loads_no_heavy_stack(setup: Setup, tmp_path: Path) -> None:
    firm = str(_profile(setup, tmp_path, "firm", "acme"))
    script = (
        "import sys, time\n"
        "from sandbox.cli import app\n"
        f"args = ['query', {SQL!r}, '--epsilon', '0.05', '--purpose', {PURPOSE!r},"
        f" '--profile', {firm!r}, '--json']\n"
        "try:\n    app(args)\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "loaded = [m for m in ('torch', 'flwr', 'opendp', 'polars') if m in sys.modules]\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr
    assert json.loads(result.stdout)["grant_id"] == "g-acme"


@pytest.mark.parametrize("args", [["dept", "--help"], ["audit", "--help"]])
def test_help_lists_role_commands(args: list[str]) -> None:
    text = _run(*args).stdout
    assert ("approve" in text) if args[0] == "dept" else ("head" in text and "entries" in text)
