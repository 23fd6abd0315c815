"""A job's run, in process (no Ray): the same ServerApp and ClientApp as the simulation,
with a failure drill, the plan made once, and client-level DP over twenty nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import federation.approval as approval
import federation.runner as runner
from federation.accounting import PrivacyCost, plan_job
from federation.inprocess import run_inprocess
from federation.job import JobSpec
from federation.result import TrainingResult
from federation.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_FEATURES,
    FlakyLoader,
    SyntheticLoader,
)

BUDGET = PrivacyCost(10.0, 1e-5)


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": SYNTHETIC_FEATURES,
        "categorical": SYNTHETIC_CATEGORICAL,
        "label": "y",
        "nodes": ("a", "b", "c"),
        "rounds": 2,
        "sample_rate": 0.05,
        "target_epsilon": 3.0,
        "learning_rate": 0.5,
        "min_nodes": 2,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> tuple[JobSpec, TrainingResult]:
    """Node ``c`` answers the describe step, then crashes in every training round."""
    marker = tmp_path_factory.mktemp("drill") / "fed_c_called"
    # The held-out counts are DP counts of about 60 rows; at eval_epsilon 1 their noise (scale 2)
    # cannot drive a total to zero, so the card's accuracy is always defined.
    spec = _spec(eval_epsilon=1.0)
    loader = FlakyLoader(fail_node="c", marker=str(marker), inner=SyntheticLoader(rows=300))
    return spec, run_inprocess(spec, loader, budget=BUDGET, keep_round_weights=True)


def test_job_completes_without_the_failed_node_and_reports_it(
    drill: tuple[JobSpec, TrainingResult],
) -> None:
    spec, result = drill
    assert result.status == "completed", result.abort_reason
    assert [r.round for r in result.rounds] == [1, 2]
    for r in result.rounds:
        assert r.nodes == ("a", "b")
        assert r.failed == ("c",)
    train_failures = [f for f in result.failures if f.stage.startswith("train")]
    assert {(f.node, f.stage) for f in train_failures} == {
        ("c", "train round 1"),
        ("c", "train round 2"),
    }
    assert all("went down" in f.reason for f in train_failures)
    assert result.model_card is not None
    assert any(f.startswith("c at train round 1") for f in result.model_card.failures)


def test_spent_is_within_the_prediction_and_the_card_states_it(
    drill: tuple[JobSpec, TrainingResult],
) -> None:
    spec, result = drill
    predicted = plan_job(spec).predicted
    assert result.predicted == dict(predicted)
    card = result.model_card
    assert card is not None
    assert card.config_hash == spec.config_hash()
    by_name = {n.dataset: n for n in card.nodes}
    for name in spec.nodes:
        assert result.spent[name].epsilon <= predicted[name].epsilon + 1e-12
        assert by_name[name].epsilon_spent == pytest.approx(result.spent[name].epsilon)
    # a and b trained every round; c's steps are charged although it crashed.
    assert result.spent["a"].epsilon == pytest.approx(predicted["a"].epsilon)
    assert by_name["a"].rounds_participated == 2
    assert by_name["c"].rounds_participated == 0
    assert result.spent["c"].epsilon == pytest.approx(predicted["c"].epsilon)
    # rows are DP counts near the true 240 training rows, not necessarily exact
    assert by_name["a"].dp_rows is not None and abs(by_name["a"].dp_rows - 240) < 200
    assert card.dp_test_accuracy is not None


def test_final_weights_are_a_trained_model(drill: tuple[JobSpec, TrainingResult]) -> None:
    _, result = drill
    assert result.weights is not None
    assert all(np.isfinite(w).all() for w in result.weights.values())
    assert all(r.mean_update_norm > 0 for r in result.rounds)
    assert all(r.overhead_s >= 0 for r in result.rounds)
    assert len(result.round_weights) == 2


def test_a_given_plan_is_used_and_the_job_is_not_planned_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _spec(rounds=1, sample_rate=0.5, min_nodes=3, target_epsilon=None, noise_multiplier=1.0)
    plan = plan_job(spec)

    def plan_again(*_: object, **__: object) -> None:
        raise AssertionError("the job was planned again")

    monkeypatch.setattr(runner, "plan_job", plan_again)
    monkeypatch.setattr(approval, "plan_job", plan_again)
    result = run_inprocess(spec, SyntheticLoader(rows=40), budget=BUDGET, plan=plan)
    assert result.status == "completed", result.abort_reason
    assert result.predicted == dict(plan.predicted)


def test_too_few_nodes_aborts_and_charges_what_left_the_nodes(tmp_path: Path) -> None:
    spec = _spec(rounds=1, sample_rate=0.5, min_nodes=3, target_epsilon=None, noise_multiplier=1.0)
    loader = FlakyLoader(fail_node="b", marker=str(tmp_path / "b"), inner=SyntheticLoader(rows=40))
    result = run_inprocess(spec, loader, budget=BUDGET)
    assert result.status == "aborted"
    assert result.abort_reason is not None and "min_nodes=3" in result.abort_reason
    assert result.weights is None and result.model_card is None
    assert result.spent["a"].components["dpsgd"] > 0  # a trained in round 1: charged
    assert result.spent["a"].components["evaluation"] == 0  # never asked to evaluate


def test_client_level_dp_over_twenty_nodes() -> None:
    spec = _spec(
        nodes=tuple(f"n{i}" for i in range(20)),
        rounds=1,
        sample_rate=0.5,
        target_epsilon=None,
        noise_multiplier=1.0,
        client_dp=True,
        client_noise_multiplier=1.0,
        client_sample_rate=1.0,
    )
    result = run_inprocess(spec, SyntheticLoader(rows=10), budget=PrivacyCost(100.0, 1e-5))
    assert result.status == "completed", result.abort_reason
    assert result.client_level_spent is not None and result.client_level_predicted is not None
    assert result.client_level_spent.epsilon == pytest.approx(result.client_level_predicted.epsilon)
    assert result.model_card is not None and result.model_card.client_level is not None
    assert result.model_card.client_level.rounds_released == 1
