"""Hostile requests against a training node, run in process (no Ray).

The firm must not control the noise of DP-SGD, and a node must run only the plan the authority
approved for its grant and dataset, however the server's messages are forged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

import federation.dpsgd as dpsgd
from federation.client_app import handle_evaluate, handle_query, handle_train
from federation.errors import FederationError, NodeApprovalError, NodeBudgetRefusedError
from federation.job import JobSpec
from federation.model_card import build_model_card
from federation.node_store import NodeStore, node_state_dir, plan_approvals
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES, SyntheticLoader
from federation.zoo import build_model

LOADER = SyntheticLoader(rows=120)
LOADERS = {"a": LOADER, "b": LOADER}


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": SYNTHETIC_FEATURES,
        "categorical": SYNTHETIC_CATEGORICAL,
        "label": "y",
        "nodes": ("a", "b"),
        "rounds": 1,
        "local_epochs": 1.0,
        "sample_rate": 0.5,
        "noise_multiplier": 1.0,
        "learning_rate": 0.5,
        "seed": 11,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def _approve(root: Path, spec: JobSpec, grant: str = "G", rows: dict | None = None) -> str:
    for name, approval in plan_approvals(spec, dict.fromkeys(spec.nodes, grant), rows).items():
        NodeStore(node_state_dir(root, name)).approve(approval)
    return str(root)


def _context() -> Context:
    return Context(
        run_id=1,
        node_id=10,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config={},
    )


def _message(
    spec: JobSpec, kind: str = MessageType.TRAIN, grant: str = "G", rows: dict | None = None
) -> Message:
    config = {
        "job": spec.canonical_json(),
        "rows": json.dumps(rows or {}),
        "grants": json.dumps(dict.fromkeys(spec.nodes, grant)),
        "server-round": 1,
    }
    # The global weights the server sends: the same for every test.
    state = build_model(spec.model, spec.features, spec.categorical, seed=0).state_dict()
    content = RecordDict({"config": ConfigRecord(config)})
    if kind != MessageType.QUERY:
        content["arrays"] = ArrayRecord(torch_state_dict=state)
    msg = Message(content, 10, kind)
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _weights(reply: Message) -> np.ndarray:
    state = reply.content["arrays"].to_torch_state_dict()
    return torch.cat([v.flatten() for v in state.values()]).numpy()


# --- the requester does not control the noise ------------------------------------------------


def test_two_runs_of_the_same_job_give_different_weights(tmp_path: Path) -> None:
    spec = _spec()
    first = handle_train(_message(spec), _context(), LOADERS, _approve(tmp_path / "1", spec))
    second = handle_train(_message(spec), _context(), LOADERS, _approve(tmp_path / "2", spec))
    assert not np.allclose(_weights(first), _weights(second))


def test_dp_sgd_twice_from_the_same_weights_differs() -> None:
    data = LOADER("a")
    out = []
    for _ in range(2):
        model = build_model("logreg", SYNTHETIC_FEATURES, SYNTHETIC_CATEGORICAL, seed=0)
        result = dpsgd.train_local(
            model,
            data.X_train,
            data.y_train,
            dp=True,
            sample_rate=0.5,
            steps=2,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            learning_rate=0.5,
        )
        out.append(torch.cat([v.flatten() for v in result.state_dict.values()]))
    assert not torch.allclose(out[0], out[1])


def test_job_seed_reaches_neither_sampling_nor_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the CSPRNG pinned, jobs that differ only in their seed train identical weights:
    sampling and noise depend on the CSPRNG alone. Unpinned, the same job differs."""
    monkeypatch.setattr(dpsgd.secrets, "randbits", lambda bits: 123456789)
    runs = []
    for i, seed in enumerate((1, 2)):
        spec = _spec(seed=seed)
        root = _approve(tmp_path / str(i), spec)
        runs.append(_weights(handle_train(_message(spec), _context(), LOADERS, root)))
    assert np.array_equal(runs[0], runs[1])


def test_a_seed_cannot_be_given_to_dp_sgd() -> None:
    data = LOADER("a")
    model = build_model("logreg", SYNTHETIC_FEATURES, SYNTHETIC_CATEGORICAL, seed=0)
    with pytest.raises(FederationError, match="CSPRNG"):
        dpsgd.train_local(
            model,
            data.X_train,
            data.y_train,
            dp=True,
            sample_rate=0.5,
            steps=1,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            learning_rate=0.5,
            seed=42,
        )


def test_model_card_says_which_randomness_the_job_fixed() -> None:
    spec = _spec(seed=5)
    card = build_model_card(
        spec,
        config_hash=spec.config_hash(),
        dp_rows={},
        spent={n: (1.0, 1e-9) for n in spec.nodes},
        rounds_participated={},
        dp_correct={},
        dp_total={},
        failures=(),
    )
    data = json.loads(card.to_json())
    assert "seed 5" in data["randomness"]["initial_weights"]
    assert "CSPRNG" in data["randomness"]["sampling_and_noise"]
    assert "randomness" in card.to_markdown()


# --- nodes run only what was approved --------------------------------------------------------


def test_node_refuses_a_job_other_than_the_approved_plan(tmp_path: Path) -> None:
    root = _approve(tmp_path, _spec())
    forged = _spec(learning_rate=5.0)  # same grant, another configuration
    with pytest.raises(NodeApprovalError, match="not the plan approved"):
        handle_train(_message(forged), _context(), LOADERS, root)


def test_node_refuses_a_grant_it_does_not_know(tmp_path: Path) -> None:
    spec = _spec()
    root = _approve(tmp_path, spec, grant="G")
    with pytest.raises(NodeApprovalError, match="knows no approval"):
        handle_train(_message(spec, grant="OTHER"), _context(), LOADERS, root)
    with pytest.raises(NodeApprovalError):
        handle_query(_message(spec, MessageType.QUERY, grant="OTHER"), _context(), LOADERS, root)


def test_node_refuses_non_private_training_on_person_data(tmp_path: Path) -> None:
    spec = _spec(dp=False, noise_multiplier=None)
    root = _approve(tmp_path, spec)  # even if a non-private plan was approved by mistake
    with pytest.raises(NodeApprovalError, match="non-private"):
        handle_train(_message(spec), _context(), LOADERS, root)


def test_second_run_of_a_grant_cannot_train_beyond_the_approved_steps(tmp_path: Path) -> None:
    spec = _spec()
    root = _approve(tmp_path, spec)
    handle_train(_message(spec), _context(), LOADERS, root)
    with pytest.raises(NodeBudgetRefusedError, match="refuses"):
        handle_train(_message(spec), _context(), LOADERS, root)  # a new run: fresh Context
    assert NodeStore(node_state_dir(root, "a")).usage("G", "a").steps == 2


def test_evaluation_is_released_once_per_approval_across_runs(tmp_path: Path) -> None:
    spec = _spec()
    root = _approve(tmp_path, spec)
    handle_evaluate(_message(spec, MessageType.EVALUATE), _context(), LOADERS, root)
    with pytest.raises(NodeBudgetRefusedError):
        handle_evaluate(_message(spec, MessageType.EVALUATE), _context(), LOADERS, root)


def test_forged_row_counts_cannot_change_the_sampling_rate(tmp_path: Path) -> None:
    """A batch_size job's sampling rate is batch_size / public rows; the server sending other
    row counts would sample more of each row (less privacy per step)."""
    spec = _spec(sample_rate=None, batch_size=24)
    rows = {"a": 96, "b": 96}
    root = _approve(tmp_path, spec, rows=rows)
    forged = {"a": 30, "b": 30}
    with pytest.raises(NodeApprovalError, match="sampling rate"):
        handle_train(_message(spec, rows=forged), _context(), LOADERS, root)
    handle_train(_message(spec, rows=rows), _context(), LOADERS, root)  # the approved plan
