"""The accountant against an independent implementation, and the cost/budget rules."""

from __future__ import annotations

import dp_accounting as dpa
import pytest
from dp_accounting import pld, rdp
from opacus.accountants.rdp import RDPAccountant

from federation.accounting import (
    PrivacyCost,
    calibrate_noise_multiplier,
    check_budget,
    dpsgd_epsilon,
    plan_job,
    predict_cost,
    spent_cost,
)
from federation.errors import BudgetExceededError, InvalidJobError
from federation.job import JobSpec

CONFIGS = [(1.0, 0.01, 1000), (1.1, 0.004, 5000), (2.0, 0.02, 2000)]
DELTA = 1e-5


def _event(sigma: float, q: float, steps: int) -> dpa.DpEvent:
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)


@pytest.mark.parametrize(("sigma", "q", "steps"), CONFIGS)
def test_rdp_epsilon_matches_google_dp_accounting(sigma: float, q: float, steps: int) -> None:
    ours = dpsgd_epsilon(sigma, q, steps, DELTA, "rdp")
    google = rdp.RdpAccountant(RDPAccountant.DEFAULT_ALPHAS)
    google.compose(_event(sigma, q, steps))
    assert ours == pytest.approx(google.get_epsilon(DELTA), rel=0.01)


@pytest.mark.parametrize(("sigma", "q", "steps"), CONFIGS)
def test_prv_epsilon_matches_google_pld_and_bounds_it(sigma: float, q: float, steps: int) -> None:
    ours = dpsgd_epsilon(sigma, q, steps, DELTA, "prv")
    google = pld.PLDAccountant(value_discretization_interval=1e-4)
    google.compose(_event(sigma, q, steps))
    reference = google.get_epsilon(DELTA)
    assert ours == pytest.approx(reference, rel=0.01)
    assert ours >= reference * 0.999  # PRV reports an upper bound


def test_calibrated_noise_meets_target_tightly() -> None:
    sigma = calibrate_noise_multiplier(1.0, DELTA, 0.01, 2000)
    assert dpsgd_epsilon(sigma, 0.01, 2000, DELTA) <= 1.0
    assert dpsgd_epsilon(sigma * 0.97, 0.01, 2000, DELTA) > 1.0 - 0.02


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": ("x",),
        "label": "y",
        "nodes": ("a", "b"),
        "sample_rate": 0.02,
        "target_epsilon": 3.0,
        "rounds": 4,
        "local_epochs": 1.0,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_predict_cost_is_within_target_and_sums_components() -> None:
    spec = _spec()
    cost = predict_cost(spec)
    plan = plan_job(spec)
    assert plan.total_steps("a") == 4 * 50
    for c in cost.values():
        assert c.epsilon <= 3.0
        assert c.epsilon == pytest.approx(sum(c.components.values()))
        assert c.components["dpsgd"] == pytest.approx(
            dpsgd_epsilon(plan.nodes["a"].noise_multiplier, 0.02, 200, 1e-5)
        )
        assert c.delta == 1e-5


def test_batch_size_uses_public_rows_and_needs_them() -> None:
    spec = _spec(sample_rate=None, batch_size=50)
    with pytest.raises(InvalidJobError, match="public row count"):
        predict_cost(spec)
    plan = plan_job(spec, {"a": 1000, "b": 5000})
    assert plan.nodes["a"].sample_rate == pytest.approx(0.05)
    assert plan.nodes["b"].sample_rate == pytest.approx(0.01)
    with pytest.raises(InvalidJobError, match="target_delta"):
        predict_cost(spec, {"a": 1000, "b": 50_000_000})


def test_spent_never_exceeds_predicted_and_extra_steps_are_refused() -> None:
    spec = _spec()
    plan = plan_job(spec)
    predicted = predict_cost(spec)
    everyone = dict.fromkeys(spec.nodes, True)
    asked = dict.fromkeys(spec.nodes, spec.rounds)
    partial = spent_cost(spec, plan, {"a": 100, "b": 200}, everyone, everyone, asked)
    assert partial["a"].epsilon < predicted["a"].epsilon
    assert partial["b"].epsilon == pytest.approx(predicted["b"].epsilon)
    with pytest.raises(BudgetExceededError, match="more than"):
        spent_cost(spec, plan, {"a": 201}, everyone, everyone)


def test_budget_check_names_the_dataset_and_what_to_do() -> None:
    cost = predict_cost(_spec())
    check_budget(cost, PrivacyCost(3.0, 1e-5))
    with pytest.raises(BudgetExceededError, match=r"b: predicted epsilon .* Lower target_epsilon"):
        check_budget(cost, {"a": PrivacyCost(3.0, 1e-5), "b": PrivacyCost(1.0, 1e-5)})
    with pytest.raises(BudgetExceededError, match="delta"):
        check_budget(cost, PrivacyCost(3.0, 1e-6))


def test_target_too_small_for_the_fixed_releases_is_refused() -> None:
    with pytest.raises(InvalidJobError, match="leaves nothing for training"):
        predict_cost(_spec(target_epsilon=0.1))
