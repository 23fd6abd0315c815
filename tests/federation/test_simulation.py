"""The one end-to-end run on Flower's Ray simulation engine (slow: Ray starts), plus the
refusals that must happen before any training. Everything else about a job's run is tested in
process (test_inprocess.py), against the same ServerApp and ClientApp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import federation.simulation as simulation
from federation.accounting import PrivacyCost, plan_job
from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec
from federation.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_FEATURES,
    FlakyLoader,
    SyntheticLoader,
)

BUDGET = PrivacyCost(3.0, 1e-5)


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": SYNTHETIC_FEATURES,
        "categorical": SYNTHETIC_CATEGORICAL,
        "label": "y",
        "nodes": ("a", "b", "c"),
        "rounds": 2,
        "sample_rate": 0.25,
        "target_epsilon": 3.0,
        "learning_rate": 0.5,
        "min_nodes": 2,
        "round_timeout_s": 120.0,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


@pytest.mark.slow
def test_ray_simulation_end_to_end_with_a_failing_node(tmp_path: Path) -> None:
    """Node ``c`` answers the describe step, then crashes in every training round (in its own
    Ray worker process): the job completes on ``a`` and ``b`` and charges ``c``'s steps."""
    spec = _spec()
    plan = plan_job(spec)
    loader = FlakyLoader(fail_node="c", marker=str(tmp_path / "c"), inner=SyntheticLoader(rows=60))
    one_worker = simulation.default_backend_config(num_cpus=1)  # one Ray worker starts faster
    result = simulation.run_simulation(
        spec, loader, budget=BUDGET, plan=plan, backend_config=one_worker
    )
    assert result.status == "completed", result.abort_reason
    assert [(r.round, r.nodes, r.failed) for r in result.rounds] == [
        (1, ("a", "b"), ("c",)),
        (2, ("a", "b"), ("c",)),
    ]
    assert all("went down" in f.reason for f in result.failures if f.stage.startswith("train"))
    for name in spec.nodes:
        assert result.spent[name].epsilon == pytest.approx(plan.predicted[name].epsilon)
    card = result.model_card
    assert card is not None and card.config_hash == spec.config_hash()
    assert result.weights is not None
    assert all(np.isfinite(w).all() for w in result.weights.values())


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


def test_a_plan_of_another_job_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulation, "flwr_run_simulation", lambda **kw: None)
    other = plan_job(_spec(rounds=3))
    with pytest.raises(InvalidJobError, match="another job"):
        simulation.run_simulation(
            _spec(), SyntheticLoader(), budget=PrivacyCost(3.0, 1e-5), plan=other
        )
    plan = plan_job(_spec())
    with pytest.raises(InvalidJobError, match="rows_per_node differs"):
        simulation.run_simulation(
            _spec(),
            SyntheticLoader(),
            budget=PrivacyCost(3.0, 1e-5),
            plan=plan,
            rows_per_node={"a": 10},
        )


def test_unused_marker_path_is_independent(tmp_path: Path) -> None:
    """The failure drill only fails the named node, and only after its first call."""
    loader = FlakyLoader(fail_node="c", marker=str(tmp_path / "fed_m"))
    assert loader("a").X_train.shape[0] == loader("a").X_train.shape[0]
    loader("c")
    with pytest.raises(RuntimeError, match="went down"):
        loader("c")
