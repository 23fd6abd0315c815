"""ClientApp logic, run in process (no Ray): what leaves a node during training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federation.client_app import handle_query, handle_train
from federation.dpsgd import train_local
from federation.errors import NodeBudgetRefusedError
from federation.job import JobSpec
from federation.node_store import NodeStore, node_state_dir, plan_approvals
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES, SyntheticLoader
from federation.zoo import build_model


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    # Flower's runners set the identity of the running task before messages are built.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0


# Features multiplied by 1000: unclipped gradients would be about 1000 times larger than C.
LOADER = SyntheticLoader(rows=200, scale=1000.0)


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": SYNTHETIC_FEATURES,
        "categorical": SYNTHETIC_CATEGORICAL,
        "label": "y",
        "nodes": ("a", "b"),
        "rounds": 2,
        "local_epochs": 3.0,
        "sample_rate": 1.0,  # every row in every batch: batch size is exactly the row count
        "noise_multiplier": 0.0,
        "max_grad_norm": 0.5,
        "learning_rate": 1.0,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def _context(partition: int) -> Context:
    return Context(
        run_id=1,
        node_id=10 + partition,
        node_config={"partition-id": partition, "num-partitions": 2},
        state=RecordDict(),
        run_config={},
    )


def _approve(root: object, spec: JobSpec, grant: str = "G") -> str:
    """Record the job's approval in each node's store under ``root`` (the department side)."""
    for name, approval in plan_approvals(spec, dict.fromkeys(spec.nodes, grant)).items():
        NodeStore(node_state_dir(str(root), name)).approve(approval)
    return str(root)


def _message(
    spec: JobSpec, kind: str, arrays: ArrayRecord | None = None, grant: str = "G"
) -> Message:
    grants = json.dumps(dict.fromkeys(spec.nodes, grant))
    content = RecordDict(
        {
            "config": ConfigRecord(
                {
                    "job": spec.canonical_json(),
                    "rows": json.dumps({}),
                    "grants": grants,
                    "server-round": 1,
                }
            )
        }
    )
    if arrays is not None:
        content["arrays"] = arrays
    msg = Message(content, 10, kind)
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _global(spec: JobSpec) -> tuple[ArrayRecord, dict[str, torch.Tensor]]:
    state = build_model(spec.model, spec.features, spec.categorical, seed=1).state_dict()
    return ArrayRecord(torch_state_dict=state), state


def _sent_update_norm(reply: Message, start: dict[str, torch.Tensor]) -> float:
    sent = reply.content["arrays"].to_torch_state_dict()
    return float(torch.sqrt(sum(((sent[k] - start[k]) ** 2).sum() for k in start)))


def test_sent_update_is_bounded_by_clipping(tmp_path) -> None:
    """With noise off and every row in every batch, each DP-SGD step moves the weights by
    lr * mean of per-sample gradients clipped to C, so the update that leaves the node has norm
    at most lr * steps * C. Without clipping the same data gives a far larger update."""
    spec = _spec()
    arrays, start = _global(spec)
    root = _approve(tmp_path, spec)
    reply = handle_train(
        _message(spec, MessageType.TRAIN, arrays), _context(0), {"a": LOADER}, root
    )
    steps = int(reply.content["metrics"]["steps"])
    assert steps == 3
    bound = spec.learning_rate * steps * spec.max_grad_norm
    norm = _sent_update_norm(reply, start)
    assert 0 < norm <= bound * (1 + 1e-5)
    assert reply.content["metrics"]["update-norm"] == pytest.approx(norm, rel=1e-5)

    plain = build_model(spec.model, spec.features, spec.categorical, seed=1)
    data = LOADER("a")
    unclipped = train_local(
        plain,
        data.X_train,
        data.y_train,
        dp=False,
        sample_rate=1.0,
        steps=3,
        noise_multiplier=0.0,
        max_grad_norm=0.5,
        learning_rate=1.0,
    )
    plain_norm = float(
        torch.sqrt(sum(((unclipped.state_dict[k] - start[k]) ** 2).sum() for k in start))
    )
    assert plain_norm > 10 * bound


def test_noise_of_the_stated_multiplier_is_added() -> None:
    """One full-batch step with and without noise from the same weights: the difference is
    lr * sigma * C * z / rows with z standard normal, coordinate by coordinate."""
    spec = _spec(model="mlp", model_params={"hidden": 128, "layers": 1})
    data = LOADER("a")
    rows = len(data.y_train)
    updates = []
    for sigma in (0.0, 2.0):
        model = build_model(spec.model, spec.features, spec.categorical, spec.model_params, 1)
        out = train_local(
            model,
            data.X_train,
            data.y_train,
            dp=True,
            sample_rate=1.0,
            steps=1,
            noise_multiplier=sigma,
            max_grad_norm=0.5,
            learning_rate=1.0,
        )
        updates.append(torch.cat([v.flatten() for v in out.state_dict.values()]))
    z = ((updates[1] - updates[0]) * rows / (1.0 * 2.0 * 0.5)).numpy()
    assert z.size > 1000
    assert np.std(z) == pytest.approx(1.0, rel=0.1)
    assert abs(np.mean(z)) < 0.1


def test_node_refuses_steps_beyond_the_reservation(tmp_path) -> None:
    spec = _spec(rounds=1)
    arrays, _ = _global(spec)
    root = _approve(tmp_path, spec)
    handle_train(_message(spec, MessageType.TRAIN, arrays), _context(1), {"b": LOADER}, root)
    with pytest.raises(NodeBudgetRefusedError, match="refuses"):
        # A fresh Context (a new run): the tally lives in the node's store, not in the run.
        handle_train(_message(spec, MessageType.TRAIN, arrays), _context(1), {"b": LOADER}, root)


def test_row_count_is_released_once_through_dp(tmp_path) -> None:
    spec = _spec(count_epsilon=0.05)
    root = _approve(tmp_path / "one", spec)
    first = handle_query(_message(spec, MessageType.QUERY), _context(0), {"a": LOADER}, root)
    again = handle_query(_message(spec, MessageType.QUERY), _context(0), {"a": LOADER}, root)
    count = first.content["metrics"]["dp-rows"]
    assert first.content["node"]["node-name"] == "a"
    assert again.content["metrics"]["dp-rows"] == count  # recorded, not a fresh draw
    fresh = []
    for i in range(20):
        other = _approve(tmp_path / f"fresh{i}", spec)
        reply = handle_query(_message(spec, MessageType.QUERY), _context(0), {"a": LOADER}, other)
        fresh.append(reply.content["metrics"]["dp-rows"])
    assert len(set(fresh)) > 1  # noise is added: independent releases differ
