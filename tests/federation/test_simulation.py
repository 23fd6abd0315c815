"""End to end on Flower's Ray simulation engine (one simulation for the whole module), plus
the refusals that must happen before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import federation.simulation as simulation
from federation.accounting import PrivacyCost, predict_cost
from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec
from federation.result import TrainingResult
from federation.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_FEATURES,
    FlakyLoader,
    SyntheticLoader,
)


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
        "round_timeout_s": 120.0,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> tuple[JobSpec, TrainingResult]:
    """Node ``c`` answers the describe step, then crashes in every training round."""
    marker = tmp_path_factory.mktemp("drill") / "fed_c_called"
    spec = _spec()
    loader = FlakyLoader(fail_node="c", marker=str(marker), inner=SyntheticLoader(rows=300))
    result = simulation.run_simulation(spec, loader, budget=PrivacyCost(3.0, 1e-5))
    return spec, result


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
    predicted = predict_cost(spec)
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
    assert abs(by_name["a"].dp_rows - 240) < 200
    assert card.dp_test_accuracy is not None


def test_final_weights_are_a_trained_model(drill: tuple[JobSpec, TrainingResult]) -> None:
    _, result = drill
    assert result.weights is not None
    assert all(np.isfinite(w).all() for w in result.weights.values())
    assert all(r.mean_update_norm > 0 for r in result.rounds)
    assert all(r.overhead_s >= 0 for r in result.rounds)


def test_over_budget_job_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(simulation, "flwr_run_simulation", lambda **kw: started.append(kw))
    spec = _spec(target_epsilon=3.0)
    with pytest.raises(BudgetExceededError, match="not started"):
        simulation.run_simulation(spec, SyntheticLoader(), budget=PrivacyCost(1.0, 1e-5))
    with pytest.raises(BudgetExceededError, match="c: predicted"):
        simulation.run_simulation(
            spec,
            SyntheticLoader(),
            budget={
                "a": PrivacyCost(5, 1e-5),
                "b": PrivacyCost(5, 1e-5),
                "c": PrivacyCost(2, 1e-5),
            },
        )
    assert started == []


def test_non_private_job_needs_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "flwr_run_simulation", lambda **kw: None)
    spec = _spec(dp=False, target_epsilon=None)
    with pytest.raises(InvalidJobError, match="allow_non_private"):
        simulation.run_simulation(spec, SyntheticLoader(), budget=None)
    with pytest.raises(InvalidJobError, match="needs a budget"):
        simulation.run_simulation(_spec(), SyntheticLoader(), budget=None)


def test_unused_marker_path_is_independent(tmp_path: Path) -> None:
    """The failure drill only fails the named node, and only after its first call."""
    loader = FlakyLoader(fail_node="c", marker=str(tmp_path / "fed_m"))
    assert loader("a").X_train.shape[0] == loader("a").X_train.shape[0]
    loader("c")
    with pytest.raises(RuntimeError, match="went down"):
        loader("c")
