"""State files and keys: private files, the signing key apart from the databases, no silent new
key, concurrent first starts, and our own one-line errors for unusable state or input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "policies"))

from policy_helpers import NOW, credit_grant, query, tax_dataset  # noqa: E402

from policies import Authority, KeyFileError, PolicyError  # noqa: E402
from sandbox.audit_cli import audit_app  # noqa: E402

app = typer.Typer()
app.add_typer(audit_app, name="audit")
runner = CliRunner()


def key_file(authority: Authority) -> Path:
    for folder in (getattr(authority, "keys_dir", None), authority.state_dir / "keys"):
        if folder is not None and (folder / "log-signing.pem").exists():
            return folder / "log-signing.pem"
    raise AssertionError("no signing key file")


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant())
    a.commit(a.reserve(a.decide(query())), b"released")
    return a


def test_state_files_and_exports_are_private(authority: Authority, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    authority.export(export)
    files = [p for p in authority.state_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith("-wal") for p in files)  # checked while the database is open
    for path in [*files, export]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(authority.state_dir.stat().st_mode) == 0o700


def test_the_signing_key_lives_apart_from_the_databases(authority: Authority) -> None:
    key = key_file(authority).resolve()
    state = authority.state_dir.resolve()
    assert state not in key.parents


@pytest.mark.parametrize("damage", ["delete", "empty"])
def test_a_missing_or_empty_key_next_to_a_log_is_a_start_up_error(
    authority: Authority, damage: str
) -> None:
    key = key_file(authority)
    if damage == "delete":
        key.unlink()
    else:
        key.write_bytes(b"")
    with pytest.raises(KeyFileError, match="restore"):
        Authority(authority.state_dir, clock=lambda: NOW)
    assert not key.exists() or key.read_bytes() == b""  # no new key was written


def test_audit_export_never_signs_with_a_new_key(authority: Authority, tmp_path: Path) -> None:
    key_file(authority).unlink()
    out = tmp_path / "export.jsonl"
    result = runner.invoke(app, ["audit", "export", str(out), "--state", str(authority.state_dir)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert not out.exists()


STARTER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
from policies import Authority
from policies.keys import key_id
authority = Authority(Path(sys.argv[1]))
print(key_id(authority.public_key), flush=True)
"""


def test_concurrent_first_start_of_several_processes(tmp_path: Path) -> None:
    state, go = tmp_path / "state", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(state), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    time.sleep(2.0)  # every process imported and waits
    go.write_text("go")
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err[-300:] for _, err in outputs]
    again = Authority(state)
    assert len(again.log.search(kind="policy")) == 1  # the rules logged once
    from policies.keys import key_id

    assert {out.strip() for out, _ in outputs} == {key_id(again.public_key)}  # one key


def test_corrupt_state_is_our_error_in_the_api_and_one_line_in_the_cli(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for name in ("state.db", "grants.db", "ledger.db", "log.db"):
        (state / name).write_bytes(b"this is not a database" * 100)
    with pytest.raises(PolicyError):
        Authority(state)
    result = runner.invoke(app, ["audit", "show", "--state", str(state)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


def test_a_malformed_export_is_one_failed_line(authority: Authority, tmp_path: Path) -> None:
    public = key_file(authority).parent / "log-public.pem"
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"[" * 100_000 + b"\n")
    result = runner.invoke(app, ["audit", "verify", str(bad), "--public-key", str(public)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("FAILED: ") and result.output.count("\n") == 1


def test_verify_replays_the_budget_of_an_export(authority: Authority, tmp_path: Path) -> None:
    """A log whose release has no reservation before it is refused even if correctly signed."""
    from policies.log import TransparencyLog

    forged_state = tmp_path / "forged"
    forged = TransparencyLog(forged_state / "log.db")
    entries = [json.loads(e) for e in authority.log.entries()]
    for entry in entries:
        if entry["kind"] == "reservation":
            continue  # drop the reservation: the release now spends budget never reserved
        fields = {k: v for k, v in entry.items() if k not in ("index", "ts_ms", "kind")}
        forged.append(entry["kind"], fields)
    forged._key = authority.log._key
    out = tmp_path / "forged.jsonl"
    forged.export(out)
    public = key_file(authority).parent / "log-public.pem"
    result = runner.invoke(app, ["audit", "verify", str(out), "--public-key", str(public)])
    assert result.exit_code == 1, result.output
    assert "budget" in result.output
