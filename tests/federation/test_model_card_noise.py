"""The model card states how precise its DP accuracy, baseline and AUC are (95% margins from
the evaluation noise) and warns only beyond that noise, or that the held-out rows are too few."""

from __future__ import annotations

import numpy as np
import opendp.prelude as opendp
import pytest

from federation.client_app import EVAL_BINS, dp_cell
from federation.job import JobSpec
from federation.model_card import (
    MAX_MARGIN,
    ModelCard,
    _pool,
    build_model_card,
    discrete_laplace_variance,
    histogram_auc,
    histogram_auc_margin,
    quality_warnings,
    ratio_margin,
)
from federation.synthetic import SYNTHETIC_CATEGORICAL, SYNTHETIC_FEATURES

NODES = ("a", "b")
TOO_FEW = "too few for the DP evaluation to tell"
NO_BETTER = "no better than always predicting the majority class"
CHANCE = "close to chance"


def _spec(eval_epsilon: float = 0.1, classes: tuple[str, ...] | None = None) -> JobSpec:
    return JobSpec(
        model="logreg",
        features=SYNTHETIC_FEATURES,
        categorical=SYNTHETIC_CATEGORICAL,
        label="y",
        nodes=NODES,
        sample_rate=0.1,
        target_epsilon=1.0,
        eval_epsilon=eval_epsilon,
        classes=classes,
    )


def _released(exact: dict[str, int], eps: float) -> dict[str, int]:
    """Cells through the nodes' own OpenDP mechanism (the card sees only these)."""
    return {k: dp_cell(v, eps) for k, v in exact.items()}


def _binary(pos: list[int], neg: list[int]) -> dict[str, int]:
    return {f"pos-{i}": pos[i] for i in range(EVAL_BINS)} | {
        f"neg-{i}": neg[i] for i in range(EVAL_BINS)
    }


def _card(spec: JobSpec, hists: dict[str, dict[str, int]]) -> ModelCard:
    half = EVAL_BINS // 2
    if spec.classes is None:
        correct = {
            n: sum(h[f"pos-{i}"] for i in range(half, EVAL_BINS))
            + sum(h[f"neg-{i}"] for i in range(half))
            for n, h in hists.items()
        }
    else:
        correct = {
            n: sum(h[f"cm-{t}-{t}"] for t in range(len(spec.classes))) for n, h in hists.items()
        }
    return build_model_card(
        spec,
        config_hash=spec.config_hash(),
        dp_rows={n: 1000 for n in hists},
        spent={n: (1.0, 1e-5) for n in spec.nodes},
        rounds_participated={n: 3 for n in hists},
        dp_correct={n: max(0, c) for n, c in correct.items()},
        dp_total={n: max(0, sum(h.values())) for n, h in hists.items()},
        failures=(),
        dp_histograms=hists,
    )


def _useful(rows: int) -> dict[str, int]:
    """A good binary model on ``rows`` held-out rows: 20% positive, accuracy 0.93."""
    pos, neg = [0] * EVAL_BINS, [0] * EVAL_BINS
    pos[8], pos[3] = int(rows * 0.18), int(rows * 0.02)
    neg[1], neg[6] = int(rows * 0.75), int(rows * 0.05)
    return _binary(pos, neg)


def test_discrete_laplace_variance_matches_opendp_samples() -> None:
    scale = 10.0
    noise = opendp.m.make_laplace(
        opendp.vector_domain(opendp.atom_domain(T=int)), opendp.l1_distance(T=int), scale=scale
    )
    samples = np.asarray(noise([0] * 40_000), dtype=float)
    # sd of the sample variance of a Laplace variable: sqrt(5) * variance / sqrt(n) ~ 2.2
    assert samples.var() == pytest.approx(discrete_laplace_variance(scale), rel=0.05)
    assert discrete_laplace_variance(scale) == pytest.approx(2 * scale**2, abs=0.2)


def test_ratio_margin_bounds_both_ends() -> None:
    assert ratio_margin(50, 5, 100, 10) == pytest.approx(55 / 90 - 0.5)
    assert ratio_margin(50, 5, 100, 100) == 1.0  # the total may be zero: nothing to tell
    assert ratio_margin(100, 10, 100, 10) == pytest.approx(1.0 - 90 / 110)  # clamped at 1


def test_a_large_clean_evaluation_has_a_small_margin_and_no_warning() -> None:
    spec = _spec(eval_epsilon=0.1)
    card = _card(spec, {n: _released(_useful(20_000), 0.1) for n in NODES})
    assert card.dp_test_accuracy == pytest.approx(0.93, abs=0.02)
    assert card.dp_test_accuracy_margin is not None and card.dp_majority_baseline_margin
    assert card.dp_test_accuracy_margin < 0.01 and card.dp_majority_baseline_margin < 0.01
    assert card.warnings == ()
    text = card.to_markdown()
    assert f"{card.dp_test_accuracy:.3f} ± {card.dp_test_accuracy_margin:.3f}" in text


def test_a_tiny_evaluation_says_the_rows_are_too_few_not_that_the_model_is_bad() -> None:
    # About 100 held-out rows per node at eval_epsilon 0.1: the noise swamps the figures
    # (a card once read accuracy 0.000 against a baseline of 0.645 from such cells).
    spec = _spec(eval_epsilon=0.1)
    for _ in range(5):  # whatever the noise drew
        card = _card(spec, {n: _released(_useful(100), 0.1) for n in NODES})
        assert card.dp_test_accuracy_margin is not None
        assert card.dp_test_accuracy_margin > MAX_MARGIN
        assert len(card.warnings) >= 1 and TOO_FEW in card.warnings[0]
        assert not any(NO_BETTER in w for w in card.warnings)
        assert "evaluate on more rows or raise eval_epsilon" in card.warnings[0]
    # The exact case seen in a run: accuracy 0.000, baseline 0.645, both +- most of [0, 1].
    warned = quality_warnings(0.0, 0.645, None, 0.7, 0.4)
    assert len(warned) == 1 and TOO_FEW in warned[0] and "0.000 ± 0.700" in warned[0]
    # ... and a baseline of 1.000 with a wide margin no longer reads "no better".
    assert NO_BETTER not in quality_warnings(0.9, 1.0, None, 0.3, 0.3)[0]


def test_a_clearly_bad_model_on_a_large_evaluation_keeps_the_baseline_warning() -> None:
    # Predicts the minority class for most rows: accuracy about 0.4 against a baseline of 0.8.
    pos, neg = [0] * EVAL_BINS, [0] * EVAL_BINS
    pos[7] = 4_000
    neg[7], neg[2] = 12_000, 4_000
    spec = _spec(eval_epsilon=0.1)
    card = _card(spec, {n: _released(_binary(pos, neg), 0.1) for n in NODES})
    assert card.dp_test_accuracy == pytest.approx(0.4, abs=0.02)
    assert card.dp_majority_baseline == pytest.approx(0.8, abs=0.02)
    assert any(NO_BETTER in w for w in card.warnings)
    assert not any(TOO_FEW in w for w in card.warnings)
    assert "±" in next(w for w in card.warnings if NO_BETTER in w)


def test_a_multiclass_card_has_margins_from_its_confusion_cells() -> None:
    classes = ("x", "y", "z")
    spec = _spec(eval_epsilon=1.0, classes=classes)
    exact = {f"cm-{t}-{p}": (3_000 if t == p else 100) for t in range(3) for p in range(3)}
    card = _card(spec, {n: _released(exact, 1.0) for n in NODES})
    assert card.dp_test_accuracy_margin is not None and card.dp_test_accuracy_margin < 0.005
    assert card.warnings == ()
    tiny = {f"cm-{t}-{p}": (10 if t == p else 1) for t in range(3) for p in range(3)}
    small = _card(_spec(eval_epsilon=0.1, classes=classes), {n: tiny for n in NODES})
    assert small.warnings and TOO_FEW in small.warnings[0]


def test_the_margins_travel_in_the_model_card_message() -> None:
    from sandbox.hub.cards import model_card_pb

    card = _card(_spec(), {"a": _useful(4000), "b": _useful(4000)})
    message = model_card_pb(card)
    assert card.dp_test_accuracy_margin is not None
    assert message.dp_test_accuracy_margin == pytest.approx(card.dp_test_accuracy_margin)
    assert message.dp_majority_baseline_margin == pytest.approx(card.dp_majority_baseline_margin)


def _ranked(rows: int) -> dict[str, int]:
    """A middling binary model on ``rows`` held-out rows: 25% positive, AUC about 0.76, no
    empty bin."""
    pos = [2, 3, 5, 7, 9, 11, 13, 15, 17, 18]
    neg = [16, 15, 13, 12, 10, 9, 8, 7, 6, 4]
    return _binary([p * rows // 400 for p in pos], [n * rows * 3 // 400 for n in neg])


def test_the_auc_margin_matches_the_spread_of_opendp_releases() -> None:
    """400 releases of two nodes' histograms through OpenDP's discrete Laplace at eval_epsilon
    0.1: the margin covers the exact AUC about 95% of the time, and is about 1.96 times the
    spread the releases actually show (not wider, not narrower)."""
    eps, rows = 0.1, 3_000
    exact = _ranked(rows)
    truth = histogram_auc(_pool([exact, exact]))
    assert truth is not None and 0.7 < truth < 0.8
    noise = opendp.m.make_laplace(
        opendp.vector_domain(opendp.atom_domain(T=int)), opendp.l1_distance(T=int), scale=1 / eps
    )
    keys = list(exact)
    aucs, margins = [], []
    for _ in range(400):
        nodes = [dict(zip(keys, noise([exact[k] for k in keys]), strict=True)) for _ in NODES]
        pooled = _pool(nodes)
        auc, margin = histogram_auc(pooled), histogram_auc_margin(pooled, len(NODES), 1 / eps)
        assert auc is not None and margin is not None
        aucs.append(auc)
        margins.append(margin)
    errors = np.abs(np.asarray(aucs) - truth)
    coverage = float(np.mean(errors <= np.asarray(margins)))
    assert 0.9 <= coverage <= 0.99, coverage
    ratio = float(np.mean(margins) / 1.96 / np.std(aucs))
    assert 0.75 <= ratio <= 1.33, ratio


def test_the_chance_warning_is_judged_against_the_auc_noise() -> None:
    # A model that ranks no better than chance, on many rows: warned, with its margin.
    same = [rows * 100 for rows in (5, 9, 12, 14, 15, 15, 12, 9, 6, 3)]
    spec = _spec(eval_epsilon=0.1)
    chance = _card(spec, {n: _released(_binary(same, [4 * v for v in same]), 0.1) for n in NODES})
    assert chance.dp_test_auc == pytest.approx(0.5, abs=0.02)
    assert chance.dp_test_auc_margin is not None and chance.dp_test_auc_margin < 0.02
    warned = [w for w in chance.warnings if CHANCE in w]
    assert len(warned) == 1 and f"± {chance.dp_test_auc_margin:.3f}" in warned[0]
    # A low AUC whose margin is wider than the card can judge: no claim about the ranking.
    assert not [w for w in quality_warnings(0.9, 0.8, 0.52, 0.01, 0.01, 0.2) if CHANCE in w]
    # ... but one whose whole margin lies at or below the threshold is still warned about.
    assert [w for w in quality_warnings(0.9, 0.8, 0.3, 0.01, 0.01, 0.2) if CHANCE in w]
    # A good model on a large evaluation: a small margin and no warning.
    good = _card(spec, {n: _released(_ranked(20_000), 0.1) for n in NODES})
    assert good.dp_test_auc_margin is not None and good.dp_test_auc_margin < 0.01
    assert not [w for w in good.warnings if CHANCE in w]
    assert f"{good.dp_test_auc:.3f} ± {good.dp_test_auc_margin:.3f}" in good.to_markdown()


def test_the_auc_margin_travels_in_the_model_card_message() -> None:
    from sandbox.hub.cards import model_card_pb

    card = _card(_spec(), {"a": _ranked(4000), "b": _ranked(4000)})
    assert card.dp_test_auc_margin is not None
    message = model_card_pb(card)
    assert message.HasField("dp_test_auc_margin")
    assert message.dp_test_auc_margin == pytest.approx(card.dp_test_auc_margin)
