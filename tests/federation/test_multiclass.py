"""Multi-class labels (softmax models, a DP confusion matrix on the card) and the DP training
loss released each round (its cost, its OpenDP mechanism, epsilon spent per round)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from federation.accounting import PrivacyCost, plan_job
from federation.client_app import dp_loss_sum, loss_clip, loss_measurement
from federation.errors import InvalidJobError
from federation.inprocess import run_inprocess
from federation.job import JobSpec
from federation.result import TrainingResult
from federation.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_FEATURES,
    SyntheticLoader,
    SyntheticMulticlassLoader,
)
from sandbox.errors import TrainingError
from sandbox.hub.cards import model_card_pb, round_pb, spec_from_pb, spec_pb
from sandbox.training import encode_label

CLASSES = ("low", "mid", "high")


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": SYNTHETIC_FEATURES,
        "categorical": SYNTHETIC_CATEGORICAL,
        "label": "y",
        "nodes": ("a", "b"),
        "rounds": 3,
        "sample_rate": 0.1,
        "target_epsilon": 4.0,
        "learning_rate": 0.5,
        "eval_epsilon": 1.0,
    }
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture(scope="module")
def multiclass() -> tuple[JobSpec, TrainingResult]:
    spec = _spec(classes=CLASSES)
    loader = SyntheticMulticlassLoader(rows=600)
    return spec, run_inprocess(spec, loader, budget=PrivacyCost(4.0, 1e-5))


def test_a_three_class_dp_model_beats_the_majority_baseline(
    multiclass: tuple[JobSpec, TrainingResult],
) -> None:
    spec, result = multiclass
    assert result.status == "completed", result.abort_reason
    card = result.model_card
    assert card is not None and card.classes == CLASSES
    assert set(card.dp_class_shares) == set(CLASSES)
    assert sum(card.dp_class_shares.values()) == pytest.approx(1.0)
    assert card.dp_majority_baseline == max(card.dp_class_shares.values())
    assert card.dp_test_accuracy is not None and card.dp_majority_baseline is not None
    # the classes are balanced (about 1/3 each); a learned softmax model does far better
    assert card.dp_test_accuracy > card.dp_majority_baseline + 0.15
    assert card.dp_test_auc is None and card.dp_positive_share is None  # binary-only measures
    assert not card.warnings
    assert result.weights is not None and result.weights["linear.weight"].shape[0] == 3
    message = model_card_pb(card)
    assert list(message.classes) == list(CLASSES) and message.loss_epsilon == spec.loss_epsilon
    assert dict(message.dp_class_shares) == pytest.approx(dict(card.dp_class_shares))


def test_loss_every_round_and_epsilon_spent_per_round_match_the_card(
    multiclass: tuple[JobSpec, TrainingResult],
) -> None:
    spec, result = multiclass
    assert result.model_card is not None
    losses = [r.dp_loss for r in result.rounds]
    assert all(x is not None and 0 < x < loss_clip(3) for x in losses), losses
    assert all(r.rounds == spec.rounds for r in result.rounds)
    spent = [r.epsilon_spent for r in result.rounds]
    assert all(b > a for a, b in zip(spent, spent[1:], strict=False)), spent
    card_eps = max(n.epsilon_spent for n in result.model_card.nodes)
    assert spent[-1] + spec.eval_epsilon == pytest.approx(card_eps)
    for name, cost in result.spent.items():
        assert cost.components["training_loss"] == pytest.approx(spec.loss_epsilon)
        assert cost.epsilon <= result.predicted[name].epsilon + 1e-9 <= 4.0 + 1e-9
    last = round_pb(result.rounds[-1])
    assert last.HasField("dp_loss") and last.epsilon_spent == spent[-1] and last.rounds == 3


def test_no_loss_is_released_with_loss_epsilon_zero() -> None:
    spec = _spec(loss_epsilon=0.0, rounds=2, nodes=("a",))
    result = run_inprocess(spec, SyntheticLoader(rows=200), budget=PrivacyCost(4.0, 1e-5))
    assert result.status == "completed", result.abort_reason
    assert [r.dp_loss for r in result.rounds] == [None, None]
    assert not round_pb(result.rounds[0]).HasField("dp_loss")
    assert result.spent["a"].components["training_loss"] == 0.0


def test_the_loss_is_part_of_the_planned_cost_and_of_a_partial_spend() -> None:
    spec = _spec(loss_epsilon=0.3, rounds=3)
    plan = plan_job(spec)
    for cost in plan.predicted.values():
        assert cost.components["training_loss"] == pytest.approx(0.3)
        assert cost.epsilon <= 4.0
    without = plan_job(_spec(loss_epsilon=0.0, rounds=3))
    # the loss leaves less for DP-SGD: more noise for the same target
    assert plan.nodes["a"].noise_multiplier > without.nodes["a"].noise_multiplier
    from federation.accounting import spent_cost

    everyone = dict.fromkeys(spec.nodes, True)
    steps = {n: plan.total_steps(n) for n in spec.nodes}
    part = spent_cost(spec, plan, steps, everyone, everyone, {"a": 1, "b": 3})
    assert part["a"].components["training_loss"] == pytest.approx(0.1)
    assert part["b"].epsilon == pytest.approx(plan.predicted["b"].epsilon)


def test_the_loss_mechanism_meets_epsilon_per_round_and_ignores_seeds() -> None:
    for k in (2, 3, 7):
        epsilon = 0.1 / 5
        sensitivity = loss_clip(k)
        measurement = loss_measurement(k, epsilon)
        eps = measurement.map(sensitivity)  # type: ignore[no-untyped-call]
        assert eps <= epsilon and eps == pytest.approx(epsilon, rel=1e-12)
    assert loss_clip(2) == 2.0 and loss_clip(3) == pytest.approx(math.log(3) + 1)
    released = []
    for _ in range(2):
        torch.manual_seed(7)
        np.random.seed(7)
        released.append(dp_loss_sum(np.full(100, 0.5), 3, 0.02))
    assert released[0] != released[1]
    with pytest.raises(InvalidJobError):
        loss_measurement(3, 0.0)


def test_classes_are_validated_and_keep_binary_hashes_stable() -> None:
    binary = _spec()
    assert "classes" not in binary.canonical_json()
    assert "loss_epsilon" not in binary.canonical_json()
    assert "classes" in _spec(classes=CLASSES).canonical_json()
    assert _spec(loss_epsilon=0.0).config_hash() != binary.config_hash()
    with pytest.raises(InvalidJobError, match="positive"):
        _spec(classes=CLASSES, positive="low")
    with pytest.raises(InvalidJobError, match="3 to 50"):
        _spec(classes=("a", "b"))
    with pytest.raises(InvalidJobError, match="distinct"):
        _spec(classes=("a", "b", "a"))
    back = spec_from_pb(spec_pb(_spec(classes=CLASSES, loss_epsilon=0.0)))
    assert back.classes == CLASSES and back.loss_epsilon == 0.0
    assert spec_from_pb(spec_pb(binary)).config_hash() == binary.config_hash()


def test_a_label_value_outside_the_classes_is_refused_without_echoing_it() -> None:
    assert encode_label(["high", "low", 3], None, "income", ("low", "3", "high")).tolist() == [
        2.0,
        0.0,
        1.0,
    ]
    with pytest.raises(TrainingError, match="'income'") as exc:
        encode_label(["low", "secret-value"], None, "income", CLASSES)
    assert "secret-value" not in str(exc.value)
    with pytest.raises(TrainingError, match="'income'"):
        encode_label(["low", None], None, "income", CLASSES)
