"""Default training settings from the data size and epsilon, and the model card's quality
figures (AUC, accuracy, majority-class baseline, class balance) from DP histograms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

from federation.accounting import PrivacyCost
from federation.client_app import EVAL_BINS, evaluation_histogram
from federation.errors import InvalidJobError
from federation.inprocess import run_inprocess
from federation.job import JobSpec, default_settings
from federation.model_card import ModelCard, build_model_card, histogram_auc, quality_warnings
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES, SyntheticLoader

JOB = {
    "model": "logreg",
    "features": SYNTHETIC_FEATURES,
    "categorical": SYNTHETIC_CATEGORICAL,
    "label": "y",
    "nodes": ("a", "b"),
}


@pytest.mark.parametrize(
    ("rows", "epsilon", "batch", "rounds", "lr"),
    [
        (640, None, 16, 60, 0.1),
        (640, 3.0, 16, 10, 0.5),
        (20_000, 3.0, 256, 10, 0.5),
        (5_000, 1.0, 78, 10, 0.5),
    ],
)
def test_the_rule(rows: int, epsilon: float | None, batch: int, rounds: int, lr: float) -> None:
    s = default_settings(rows, epsilon)
    assert s["sample_rate"] == pytest.approx(batch / rows, abs=1e-6)
    assert (s["rounds"], s["learning_rate"], s["dp"]) == (rounds, lr, epsilon is not None)
    assert s["strategy"] == "fedavgm" and s["max_grad_norm"] == 1.0
    if epsilon is not None:
        assert s["target_epsilon"] == epsilon


def test_with_defaults_and_overrides() -> None:
    spec = JobSpec.with_defaults(20_000, 3.0, **JOB)
    assert spec.dp and spec.target_epsilon == 3.0 and spec.sample_rate == 0.0128
    firm = JobSpec.with_defaults(
        20_000, 3.0, **JOB, learning_rate=0.2, rounds=3, batch_size=64, max_grad_norm=2.0
    )
    assert (firm.learning_rate, firm.rounds, firm.batch_size, firm.sample_rate) == (
        0.2,
        3,
        64,
        None,
    )
    assert firm.max_grad_norm == 2.0
    sigma = JobSpec.with_defaults(20_000, 3.0, **JOB, noise_multiplier=1.1)
    assert sigma.target_epsilon is None and sigma.noise_multiplier == 1.1
    open_job = JobSpec.with_defaults(20_000, None, **JOB)
    assert not open_job.dp and open_job.rounds == 60
    with pytest.raises(InvalidJobError):
        default_settings(0, 3.0)


def test_positive_label_keeps_old_hashes() -> None:
    spec = JobSpec(**JOB, sample_rate=0.1, target_epsilon=1.0)
    assert "positive" not in spec.canonical_json()
    mapped = JobSpec(**JOB, sample_rate=0.1, target_epsilon=1.0, positive=">50K")
    assert mapped.config_hash() != spec.config_hash()


def test_histogram_auc_matches_binned_scores() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.3).astype(np.float32)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, 4000) + 1.5 * y - 1)))
    hist = evaluation_histogram(scores, y)
    assert sum(hist.values()) == 4000 and len(hist) == 2 * EVAL_BINS
    binned = np.minimum((scores * EVAL_BINS).astype(int), EVAL_BINS - 1)
    assert histogram_auc(hist) == pytest.approx(roc_auc_score(y, binned), abs=1e-9)
    auc = histogram_auc(hist)
    assert auc is not None and abs(auc - roc_auc_score(y, scores)) < 0.03


def _card(hists: dict[str, dict[str, int]], correct: dict[str, int]) -> ModelCard:
    spec = JobSpec(**JOB, sample_rate=0.1, target_epsilon=1.0)
    return build_model_card(
        spec,
        config_hash=spec.config_hash(),
        dp_rows={"a": 100, "b": 100},
        spent={"a": (1.0, 1e-5), "b": (1.0, 1e-5)},
        rounds_participated={"a": 5, "b": 5},
        dp_correct=correct,
        dp_total={n: sum(h.values()) for n, h in hists.items()},
        failures=(),
        dp_histograms=hists,
        noise_multipliers={"a": 1.2, "b": 1.3},
    )


def test_card_warns_for_a_majority_class_model() -> None:
    # Every row scored below 0.5: the model predicts the majority class (negative) always.
    hist = {f"{k}-{i}": 0 for k in ("pos", "neg") for i in range(EVAL_BINS)}
    hist |= {"pos-2": 20, "neg-2": 80}
    card = _card({"a": hist, "b": hist}, {"a": 80, "b": 80})
    assert card.dp_majority_baseline == pytest.approx(0.8)
    assert card.dp_positive_share == pytest.approx(0.2)
    assert card.dp_test_auc == pytest.approx(0.5)
    assert len(card.warnings) == 2
    text = card.to_markdown()
    assert "WARNING" in text and "majority class" in text
    assert card.settings["noise_multiplier_max"] == 1.3


def test_card_does_not_warn_for_a_useful_model() -> None:
    hist = {f"{k}-{i}": 0 for k in ("pos", "neg") for i in range(EVAL_BINS)}
    hist |= {"pos-8": 18, "pos-3": 2, "neg-1": 75, "neg-6": 5}
    card = _card({"a": hist}, {"a": 93})
    assert card.dp_test_auc is not None and card.dp_test_auc > 0.9 and card.warnings == ()
    assert quality_warnings(None, None, None) == ()


def test_a_default_job_reports_quality_on_its_card() -> None:
    loader = SyntheticLoader(rows=500)
    spec = JobSpec.with_defaults(400, 3.0, **JOB, rounds=4)  # fewer rounds: test time
    result = run_inprocess(spec, loader, budget=PrivacyCost(3.0, 1e-5))
    assert result.status == "completed" and result.model_card is not None
    card = result.model_card
    assert card.dp_test_auc is not None and card.dp_majority_baseline is not None
    assert card.settings["learning_rate"] == 0.5 and card.settings["target_epsilon"] == 3.0
    assert all(n.dp_test_auc is not None for n in card.nodes)
    # The evaluation costs eval_epsilon, as before: the spend never exceeds the plan.
    for name, cost in result.spent.items():
        assert cost.epsilon <= result.predicted[name].epsilon + 1e-9
    assert card.dp_test_auc > 0.7
