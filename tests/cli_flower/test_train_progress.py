"""``sandbox train --follow``: one progress line per round (rewritten in place on a terminal),
failures and the final status on lines of their own. The formatting with JobEvents, then one
live run of the command against a real hub and two real nodes (mTLS)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from typer.testing import CliRunner

from sandbox.cli import app
from sandbox.client.jobs import JobEvent
from sandbox.firm_cli import RoundProgress, round_line
from tests.training_service.test_training_service import (  # noqa: F401 - the fixture
    PURPOSE,
    _Setup,
    setup,
)


def _round(n: int, loss: float | None, eps: float, failed: list[str] | None = None) -> JobEvent:
    data: dict[str, object] = {
        "round": n,
        "rounds": 10,
        "nodes": ["a", "b", "c", "d"][: 4 - len(failed or [])],
        "failed": failed or [],
        "wall_s": 12.34,
        "epsilon_spent": eps,
    }
    if loss is not None:
        data["dp_loss"] = loss
    return JobEvent("J1", 0, "round", data)


def test_round_line_formats_every_field() -> None:
    assert (
        round_line(_round(3, 0.4123, 1.234).data, 3.0)
        == "round 3/10  loss 0.412  ε 1.23 of 3.00  nodes 4/4  (12.3 s)"
    )
    assert round_line(_round(4, None, 1.5, ["d"]).data, None) == (
        "round 4/10  loss –  ε 1.50  nodes 3/4  (12.3 s)"
    )
    assert "ε inf" in round_line({"round": 1, "epsilon_spent": "Infinity"}, None)


def test_progress_rewrites_one_line_on_a_terminal_and_not_elsewhere() -> None:
    failure = JobEvent("J1", 0, "failure", {"node": "d", "stage": "train", "reason": "timeout"})
    done = JobEvent("J1", 0, "finished", {"status": "completed", "result_id": "R1"})
    events = [_round(1, 0.7, 0.5), _round(2, None, 1.0), failure, _round(3, 0.5, 1.5), done]
    tty, pipe = io.StringIO(), io.StringIO()
    for out, is_tty in ((tty, True), (pipe, False)):
        progress = RoundProgress(out, 3.0, tty=is_tty)
        for event in events:
            progress.event(event)
        progress.close()
    lines = pipe.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "round 1/10", "round 2/10", "node d failed at train: timeout", "round 3/10",
        "completed; result R1",
    ]  # fmt: skip
    assert "\r" not in pipe.getvalue()
    shown = tty.getvalue()
    assert shown.count("\n") == 4  # round 2 ended before the failure, round 3 before the end
    assert shown.startswith("\rround 1/10") and "\rround 2/10" in shown
    screen = [part.split("\r")[-1] for part in shown.split("\n")]  # what stays visible
    assert screen[0].startswith("round 2/10  loss –")
    assert screen[1] == "node d failed at train: timeout"
    assert screen[2].startswith("round 3/10  loss 0.500  ε 1.50 of 3.00")
    assert screen[3] == "completed; result R1"


def test_train_follow_prints_one_line_per_round_live(
    setup: _Setup,  # noqa: F811
    tmp_path: Path,
) -> None:
    pki = setup.pki
    profile = tmp_path / "profile.toml"
    profile.write_text(
        f'hub = "127.0.0.1:{setup.hub.port}"\nca = "{pki / "ca.pem"}"\n'
        f'cert = "{pki / "firm-bank.pem"}"\nkey = "{pki / "firm-bank-key.pem"}"\n',
        encoding="utf-8",
    )
    job = tmp_path / "job.json"
    job.write_text(json.dumps(setup.spec.model_dump(mode="json")), encoding="utf-8")
    argv = ["train", str(job), "--purpose", PURPOSE, "--grant", "T1", "--follow"]
    result = CliRunner().invoke(app, [*argv, "--profile", str(profile)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("job ") and lines[1].startswith("accepted")
    rounds = [line for line in lines if line.startswith("round ")]
    assert [r.split("  ")[0] for r in rounds] == ["round 1/2", "round 2/2"], result.output
    for line in rounds:
        assert " of " in line and "nodes 2/2" in line and line.endswith(" s)"), line
    assert lines[-1].startswith("completed; result "), result.output
