"""Flower's and Ray's output goes to a log file, never to the terminal: a Ray simulation job
run as its own process (its whole stderr, Ray's processes included), a block of Flower logging
and warnings, and a server process's Flower logger."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from federation.simulation import FLOWER_LOG_ENV, default_flower_log, flower_output_to
from sandbox.cli_support import send_flower_output

ROOT = Path(__file__).resolve().parents[2]

JOB = """
from federation.accounting import PrivacyCost
from federation.job import JobSpec
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES, SyntheticLoader
import federation.simulation as simulation

spec = JobSpec(model="logreg", features=SYNTHETIC_FEATURES, categorical=SYNTHETIC_CATEGORICAL,
               label="y", nodes=("a", "b"), rounds=1, sample_rate=0.25, target_epsilon=3.0,
               learning_rate=0.5, min_nodes=2, round_timeout_s=120.0)
result = simulation.run_simulation(spec, SyntheticLoader(rows=60), budget=PrivacyCost(3.0, 1e-5),
                                   backend_config=simulation.default_backend_config(num_cpus=1))
print("status", result.status)
"""


@pytest.mark.slow
def test_a_simulation_job_writes_flower_lines_to_the_log_and_none_to_stderr(
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "flower.log"
    env = {**os.environ, FLOWER_LOG_ENV: str(log)}
    done = subprocess.run(
        [sys.executable, "-c", JOB], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "status completed"
    assert done.stderr == ""  # neither Flower, Ray nor their warnings reach the terminal
    text = log.read_text(encoding="utf-8")
    assert "[flwr]" in text and "configure_train" in text and "aggregate_train" in text
    assert log.stat().st_mode & 0o777 == 0o600


def test_flower_output_to_takes_flower_ray_and_warnings_then_restores(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import flwr.supercore.logger  # noqa: F401 - Flower's terminal handler

    flwr_log = logging.getLogger("flwr")
    before = (flwr_log.handlers[:], flwr_log.propagate)
    log = tmp_path / "flower.log"
    with flower_output_to(log):
        flwr_log.warning("configure_train: Sampled 2 nodes")
        logging.getLogger("ray").warning("ray line")
        warnings.warn("a library's warning", FutureWarning, stacklevel=1)
    assert capfd.readouterr().err == ""
    text = log.read_text(encoding="utf-8")
    assert "configure_train" in text and "ray line" in text and "a library's warning" in text
    assert (flwr_log.handlers, flwr_log.propagate) == before


def test_a_servers_flower_logger_writes_to_its_state(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flwr_log = logging.getLogger("flwr")
    monkeypatch.setattr(flwr_log, "handlers", flwr_log.handlers[:])
    monkeypatch.setattr(flwr_log, "propagate", flwr_log.propagate)
    log = send_flower_output(tmp_path / "state" / "logs" / "flower.log")
    flwr_log.info("aggregate_train: Received 2 results")
    assert capfd.readouterr().err == ""
    assert "aggregate_train" in log.read_text(encoding="utf-8")
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert log.stat().st_mode & 0o777 == 0o600
    for handler in flwr_log.handlers:
        handler.close()


def test_the_default_log_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(FLOWER_LOG_ENV, str(tmp_path / "f.log"))
    assert default_flower_log() == tmp_path / "f.log"
    monkeypatch.delenv(FLOWER_LOG_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_flower_log() == tmp_path / "sandbox" / "logs" / "flower.log"
