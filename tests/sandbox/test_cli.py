"""The `sandbox` command line, run as a user would (a real subprocess for the main paths)."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from sandbox.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _sandbox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_query_json_in_a_subprocess(pums_catalog_dir):
    proc = _sandbox(
        "query",
        "--catalog",
        str(pums_catalog_dir),
        "--epsilon",
        "1",
        "--json",
        "SELECT sex, COUNT(*) AS n, AVG(age) AS a FROM pums GROUP BY sex",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["epsilon_spent"] <= 1.0 and abs(doc["epsilon_spent"] - 1.0) < 1e-9
    assert doc["delta_spent"] == 0.0
    assert [row["sex"] for row in doc["rows"]] == [0, 1]
    for row in doc["rows"]:
        low, high = row["n"]["ci95"]
        assert low <= row["n"]["value"] <= high


def test_bad_query_exits_nonzero_with_the_reason(pums_catalog_dir):
    proc = _sandbox(
        "query", "--catalog", str(pums_catalog_dir), "--epsilon", "0", "SELECT COUNT(*) FROM pums"
    )
    assert proc.returncode == 2
    assert "epsilon must be at least" in proc.stderr
    result = runner.invoke(
        app,
        [
            "query",
            "--catalog",
            str(pums_catalog_dir),
            "--epsilon",
            "1",
            "--json",
            "SELECT salary FROM pums",
        ],
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout.splitlines()[0])["epsilon_spent"] == 0.0


def test_datasets_lists_public_metadata(pums_catalog_dir):
    result = runner.invoke(app, ["datasets", "--catalog", str(pums_catalog_dir)])
    assert result.exit_code == 0
    assert "pums" in result.stdout and "bounds: [0, 500000]" in result.stdout
    as_json = runner.invoke(app, ["datasets", "--catalog", str(pums_catalog_dir), "--json"])
    meta = json.loads(as_json.stdout)
    assert meta[0]["name"] == "pums" and "path" not in meta[0]


def test_mock_and_generate(tmp_path, pums_catalog_dir):
    out = tmp_path / "m.csv"
    result = runner.invoke(
        app, ["mock", "pums", "--catalog", str(pums_catalog_dir), "--out", str(out), "--rows", "50"]
    )
    assert result.exit_code == 0, result.stdout
    assert pl.read_csv(out).height == 50
    gen = runner.invoke(app, ["generate", "--out", str(tmp_path / "gen"), "--rows", "2000"])
    assert gen.exit_code == 0, gen.stdout
    listed = runner.invoke(app, ["datasets", "--catalog", str(tmp_path / "gen")])
    assert listed.stdout.count("_enterprise") >= 4
    bad = runner.invoke(app, ["datasets", "--catalog", str(tmp_path / "absent")])
    assert bad.exit_code == 2
