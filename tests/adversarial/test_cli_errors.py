"""The `sandbox` command line, run as real subprocesses: every failure is one line, no trace."""

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.catalog import load_catalog
from sandbox.errors import SandboxError
from sandbox.generate import GenerateError
from sandbox.mock import write_mock

ROOT = Path(__file__).resolve().parents[2]
PUMS = str(ROOT / "examples" / "pums")


def _sandbox(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture()
def malformed_catalog(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n  columns: {\n", encoding="utf-8")
    return tmp_path


def test_malformed_yaml_is_one_line(malformed_catalog):
    line = _one_error_line(_sandbox("datasets", "--catalog", str(malformed_catalog)))
    assert "not valid YAML" in line


def test_bad_sql_is_one_line():
    proc = _sandbox("query", "--catalog", PUMS, "--epsilon", "1", "SELECT 'unterminated")
    assert "unterminated" in _one_error_line(proc)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e-300"])
def test_non_finite_or_tiny_epsilon_is_one_line(value):
    proc = _sandbox("query", "--catalog", PUMS, "--epsilon", value, "SELECT COUNT(*) FROM pums")
    assert "epsilon" in _one_error_line(proc)


def test_delta_the_dataset_does_not_allow_is_one_line():
    proc = _sandbox(
        "query", "--catalog", PUMS, "--epsilon", "1", "--delta", "0.5", "SELECT COUNT(*) FROM pums"
    )
    assert "delta" in _one_error_line(proc)


def test_epsilon_that_is_not_a_number_is_one_line():
    proc = _sandbox("query", "--catalog", PUMS, "--epsilon", "lots", "SELECT COUNT(*) FROM pums")
    assert "--epsilon" in _one_error_line(proc)


def test_bad_catalog_path_and_unknown_dataset_are_one_line(tmp_path):
    assert "not a directory" in _one_error_line(
        _sandbox("datasets", "--catalog", str(tmp_path / "absent"))
    )
    assert "unknown dataset" in _one_error_line(
        _sandbox("query", "--catalog", PUMS, "--epsilon", "1", "SELECT COUNT(*) FROM nope")
    )


def test_unwritable_mock_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _sandbox("mock", "pums", "--catalog", PUMS, "--out", str(blocker / "m.csv"))
    assert "cannot write mock rows" in _one_error_line(proc)


def test_negative_mock_seed_is_one_line(tmp_path):
    proc = _sandbox(
        "mock", "pums", "--catalog", PUMS, "--seed", "-1", "--out", str(tmp_path / "m.csv")
    )
    assert "seed" in _one_error_line(proc)


def test_data_that_breaks_its_manifest_is_one_line(tmp_path):
    (tmp_path / "d.csv").write_text("x\n0.5\n123456789012.25\n", encoding="utf-8")
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.csv\nclassification: 内部\ncolumns:\n"
        "  - {name: x, type: float, bounds: [0, 1]}\n",
        encoding="utf-8",
    )
    proc = _sandbox("query", "--catalog", str(tmp_path), "--epsilon", "1", "SELECT COUNT(*) FROM d")
    line = _one_error_line(proc)
    assert "'x'" in line and "123456789012" not in line
    check = _sandbox("check", "--catalog", str(tmp_path))
    assert check.returncode == 2 and "1 rows outside the declared bounds" in check.stdout


def test_python_api_mock_and_generate_raise_sandbox_errors(tmp_path):
    manifest = load_catalog(PUMS)["pums"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SandboxError):
        write_mock(manifest, blocker / "m.csv", rows=10)
    with pytest.raises(SandboxError):
        write_mock(manifest, tmp_path / "m.csv", rows=10, seed=-1)
    assert issubclass(GenerateError, SandboxError)


def test_statement_the_parser_only_half_understands_is_one_line():
    # sqlglot logs a warning before falling back; only our line may reach stderr.
    proc = _sandbox("query", "--catalog", PUMS, "--epsilon", "1", "SET x FROM pums")
    assert "only SELECT" in _one_error_line(proc)
