"""Hostile and careless training jobs: refused with the federation's own error, before any
training and without echoing what was sent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federation.client_app import handle_train
from federation.errors import FederationError, InvalidJobError
from federation.job import EPSILON_FLOOR, JobSpec

BASE: dict[str, object] = {
    "model": "logreg",
    "features": ["x"],
    "label": "y",
    "nodes": ["a"],
    "sample_rate": 0.1,
}


def test_non_finite_epsilon_is_refused() -> None:
    for field in ("target_epsilon", "count_epsilon", "eval_epsilon", "client_target_epsilon"):
        for value in (math.inf, math.nan):
            job = {**BASE, "target_epsilon": 1.0, field: value}
            if field == "client_target_epsilon":
                job["client_dp"] = True
            with pytest.raises(InvalidJobError, match=field):
                JobSpec.parse(job)


def test_non_finite_noise_and_step_sizes_are_refused() -> None:
    for field in ("noise_multiplier", "max_grad_norm", "learning_rate", "local_epochs"):
        for value in (math.inf, math.nan):
            with pytest.raises(InvalidJobError, match=field):
                JobSpec.parse({**BASE, "noise_multiplier": 1.0, field: value})


def test_epsilon_below_the_ledger_unit_is_refused() -> None:
    assert EPSILON_FLOOR == 1e-6
    with pytest.raises(InvalidJobError, match="target_epsilon"):
        JobSpec.parse({**BASE, "target_epsilon": 1e-9})
    with pytest.raises(InvalidJobError, match="count_epsilon"):
        JobSpec.parse({**BASE, "target_epsilon": 1.0, "count_epsilon": 1e-12})


def test_job_files_raise_only_the_federation_error(tmp_path: Path) -> None:
    cases = {
        "broken.yaml": "model: [logreg\n",
        "list.yaml": "- 1\n- 2\n",
        "inf.json": json.dumps({**BASE, "target_epsilon": "Infinity"}),
        "nan.yaml": "model: logreg\nfeatures: [x]\nlabel: y\nnodes: [a]\nsample_rate: 0.1\n"
        "target_epsilon: .nan\n",
        "binary.json": b"\xff\xfe\x00",
        "deep.json": "[" * 100_000,
    }
    for name, text in cases.items():
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidJobError):
            JobSpec.from_file(path)
    with pytest.raises(InvalidJobError, match="cannot read"):
        JobSpec.from_file(tmp_path / "missing.yaml")
    good = tmp_path / "job.yaml"
    good.write_text(
        "model: logreg\nfeatures: [x]\nlabel: y\nnodes: [a]\nsample_rate: 0.1\n"
        "target_epsilon: 2.0\ninit_seed: 4\n",
        encoding="utf-8",
    )
    assert JobSpec.from_file(good).seed == 4


def test_refusals_do_not_echo_the_submitted_values() -> None:
    secret = "label-SECRET-VALUE"
    with pytest.raises(InvalidJobError) as info:
        JobSpec.parse({**BASE, "target_epsilon": 1.0, "rounds": secret})
    assert secret not in str(info.value)


def test_a_garbled_job_message_gets_a_federation_error(tmp_path: Path) -> None:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    config = ConfigRecord({"job": '{"model": "logreg"', "rows": "{}", "server-round": 1})
    msg = Message(RecordDict({"config": config}), 10, MessageType.TRAIN)
    context = Context(1, 10, {"partition-id": 0, "num-partitions": 1}, RecordDict(), {})
    with pytest.raises(FederationError):
        handle_train(msg, context, {}, str(tmp_path))


def test_a_hostile_field_name_does_not_break_the_one_line_error() -> None:
    """A field name holding a newline used to be echoed into a multi-line message."""
    with pytest.raises(InvalidJobError) as caught:
        JobSpec.parse({**BASE, "target_epsilon": 1.0, "evil\nname\x80": 1})
    assert "\n" not in str(caught.value) and "evil" not in str(caught.value)
