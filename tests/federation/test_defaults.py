"""Default training settings from the data size and epsilon, and the model card's quality
figures (AUC, accuracy, majority-class baseline, class balance) from DP histograms."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped]

from federation.accounting import PrivacyCost
from federation.client_app import EVAL_BINS, evaluation_histogram
from federation.dpsgd import load_weights, predict_proba
from federation.errors import InvalidJobError
from federation.inprocess import run_inprocess
from federation.job import JobSpec, default_settings
from federation.model_card import (
    BASELINE_MARGIN,
    ModelCard,
    build_model_card,
    histogram_auc,
    quality_warnings,
)
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES, SyntheticLoader
from federation.zoo import build_model

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
    # 10,000 held-out rows per node: enough for the DP figures to tell (see MAX_MARGIN).
    hist = {f"{k}-{i}": 0 for k in ("pos", "neg") for i in range(EVAL_BINS)}
    hist |= {"pos-2": 2000, "neg-2": 8000}
    card = _card({"a": hist, "b": hist}, {"a": 8000, "b": 8000})
    assert card.dp_majority_baseline == pytest.approx(0.8)
    assert card.dp_positive_share == pytest.approx(0.2)
    assert card.dp_test_auc == pytest.approx(0.5)
    assert len(card.warnings) == 2
    text = card.to_markdown()
    assert "WARNING" in text and "majority class" in text
    assert card.settings["noise_multiplier_max"] == 1.3


def test_card_does_not_warn_for_a_useful_model() -> None:
    hist = {f"{k}-{i}": 0 for k in ("pos", "neg") for i in range(EVAL_BINS)}
    hist |= {"pos-8": 1800, "pos-3": 200, "neg-1": 7500, "neg-6": 500}  # 10,000 rows
    card = _card({"a": hist}, {"a": 9300})
    assert card.dp_test_auc is not None and card.dp_test_auc > 0.9 and card.warnings == ()
    assert quality_warnings(None, None, None) == ()


#: Rows per node of the end-to-end card test: 16,000 training rows make the DP model reliably
#: good at epsilon 3, and 4,000 held-out rows per node keep the card's figures close to the
#: exact ones (each histogram cell carries Laplace noise of scale 1 / eval_epsilon = 10).
CARD_ROWS = 20_000
#: Standard deviations allowed between a card figure and the exact one. A Laplace variable
#: exceeds k standard deviations with probability exp(-k * sqrt(2)) (1.2e-5 for k = 8); a
#: weighted sum of several, as here, has lighter tails still.
CARD_SDS = 8.0


def _pool(hists: list[dict[str, int]]) -> dict[str, int]:
    return {k: sum(h[k] for h in hists) for k in hists[0]}


def _accuracy(h: dict[str, int]) -> float:
    half = EVAL_BINS // 2
    correct = sum(h[f"pos-{i}"] for i in range(half, EVAL_BINS))
    correct += sum(h[f"neg-{i}"] for i in range(half))
    return correct / sum(h.values())


def _baseline(h: dict[str, int]) -> float:
    pos = sum(v for k, v in h.items() if k.startswith("pos-"))
    return max(pos, sum(h.values()) - pos) / sum(h.values())


def _auc(h: dict[str, int]) -> float:
    auc = histogram_auc(h)
    assert auc is not None
    return auc


def _noise_sd(
    figure: Callable[[dict[str, int]], float], pooled: dict[str, int], nodes: int, epsilon: float
) -> float:
    """Standard deviation of ``figure`` of the pooled histogram when every node's cells carry
    Laplace noise of scale 1/epsilon (variance 2/epsilon^2 per node and cell), to first order:
    the figure's change for one more row in each cell, weighted by the cell's noise."""
    base = figure(pooled)
    grads = [figure({**pooled, key: pooled[key] + 1}) - base for key in pooled]
    return float(np.sqrt(sum(g * g for g in grads) * nodes * 2.0 / epsilon**2))


def test_a_default_job_reports_quality_on_its_card() -> None:
    """The card of a default DP job reports AUC, accuracy and the majority baseline within the
    evaluation noise of the exact figures of the released model on the nodes' held-out rows,
    and does not warn for a model clearly better than the baseline."""
    loader = SyntheticLoader(rows=CARD_ROWS)
    train_rows = len(loader("a").y_train)
    spec = JobSpec.with_defaults(train_rows, 3.0, **JOB, rounds=4)  # fewer rounds: test time
    result = run_inprocess(spec, loader, budget=PrivacyCost(3.0, 1e-5))
    assert result.status == "completed" and result.model_card is not None
    card = result.model_card
    assert card.settings["learning_rate"] == 0.5 and card.settings["target_epsilon"] == 3.0
    assert all(n.dp_test_auc is not None for n in card.nodes)
    # The evaluation costs eval_epsilon, as before: the spend never exceeds the plan.
    for name, cost in result.spent.items():
        assert cost.epsilon <= result.predicted[name].epsilon + 1e-9
    # The exact figures of the released model (what the card estimates under DP noise).
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params)
    assert result.weights is not None
    load_weights(model, {k: torch.as_tensor(v) for k, v in result.weights.items()})
    exact = _pool(
        [
            evaluation_histogram(predict_proba(model, loader(n).X_test), loader(n).y_test)
            for n in spec.nodes
        ]
    )
    # The DP model is useful: the labelling rule's own AUC on these rows is about 0.85.
    assert _auc(exact) > 0.8
    bounds = {}
    for figure, reported in (
        (_auc, card.dp_test_auc),
        (_accuracy, card.dp_test_accuracy),
        (_baseline, card.dp_majority_baseline),
    ):
        sd = _noise_sd(figure, exact, len(spec.nodes), spec.eval_epsilon)
        bounds[figure] = CARD_SDS * sd + 1e-3  # 1e-3: second-order terms
        assert reported is not None
        assert abs(reported - figure(exact)) <= bounds[figure], (figure.__name__, reported)
    # Clearly better than the baseline even after the noise: the card must not warn.
    assert (
        _accuracy(exact) - bounds[_accuracy]
        > _baseline(exact) + bounds[_baseline] + BASELINE_MARGIN
    )
    assert card.warnings == ()
