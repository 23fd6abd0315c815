"""Empirical audit of DP-SGD (one-run auditing): the statistics, and a small audit end to end.

The bound must be valid (never above the true epsilon more often than 5% of the time), monotone,
and tight to its own definition; a real DP-SGD run must stay within the accountant's claim, and
training without DP must be caught by the same attack.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special, stats

from benchmarks.privacy_audit import (
    CONFIDENCE,
    Settings,
    audit,
    audit_p_value,
    epsilon_lower_bound,
    guess,
)
from federation.accounting import dpsgd_epsilon


def test_all_correct_bound_has_the_closed_form_and_grows_with_the_guesses() -> None:
    # With delta = 0 and every guess right, the p-value is q^r: the bound is logit(0.05^(1/r)).
    bounds = []
    for r in (10, 50, 100, 500, 1000):
        expected = float(special.logit((1 - CONFIDENCE) ** (1 / r)))
        got = epsilon_lower_bound(1000, r, r, 0.0)
        assert got == pytest.approx(expected, abs=1e-6)
        bounds.append(got)
    assert bounds == sorted(bounds) and bounds[0] < bounds[-1]
    assert bounds[2] == pytest.approx(3.493, abs=1e-3)


def test_random_guessing_gives_zero() -> None:
    assert epsilon_lower_bound(1000, 100, 50, 1e-5) == 0.0
    assert epsilon_lower_bound(1000, 200, 104, 1e-5) == 0.0
    assert epsilon_lower_bound(1000, 0, 0, 1e-5) == 0.0
    # Coin-flip guesses over many simulated audits: a positive bound at most ~5% of the time.
    counts = np.random.default_rng(1).binomial(200, 0.5, size=4000)
    bound = {v: epsilon_lower_bound(1000, 200, int(v), 1e-5) for v in np.unique(counts)}
    positive = np.mean([bound[v] > 0 for v in counts])
    assert positive <= 0.05 + 0.01


@pytest.mark.parametrize("true_epsilon", [0.5, 1.0, 2.0])
def test_bound_exceeds_the_true_epsilon_at_most_five_percent_of_the_time(
    true_epsilon: float,
) -> None:
    # An epsilon-DP randomized response on each canary is the worst case of the theorem: the
    # correct count is Binomial(r, e^eps / (1 + e^eps)). The bound must cover it.
    r = 200
    counts = np.random.default_rng(2).binomial(r, special.expit(true_epsilon), size=4000)
    bound = {v: epsilon_lower_bound(1000, r, int(v), 1e-5) for v in np.unique(counts)}
    above = np.mean([bound[v] > true_epsilon for v in counts])
    assert above <= 0.05 + 0.01
    assert np.mean([bound[v] for v in counts]) > 0.3 * true_epsilon  # and is not vacuous


def test_bound_is_monotone_in_correct_count_and_delta() -> None:
    by_count = [epsilon_lower_bound(1000, 100, v, 1e-5) for v in range(101)]
    assert all(a <= b for a, b in zip(by_count, by_count[1:], strict=False))
    assert by_count[50] == 0.0 and by_count[100] > 3.0
    by_delta = [epsilon_lower_bound(1000, 100, 90, d) for d in (0.0, 1e-6, 1e-4, 1e-3)]
    assert all(a >= b for a, b in zip(by_delta, by_delta[1:], strict=False))
    assert by_delta[0] > by_delta[-1]


def test_bound_is_exactly_what_the_observed_count_supports() -> None:
    m, r, v, delta = 1000, 200, 170, 1e-5
    eps = epsilon_lower_bound(m, r, v, delta)
    p = 1 - CONFIDENCE
    assert audit_p_value(m, r, v, eps, delta) < p  # the count rejects the bound ...
    assert audit_p_value(m, r, v, eps + 1e-3, delta) >= p  # ... and nothing above it
    # delta = 0: the p-value is the binomial tail; delta > 0 only adds to it.
    q = special.expit(eps)
    assert audit_p_value(m, r, v, eps, 0.0) == pytest.approx(stats.binom.sf(v - 1, r, q))
    assert audit_p_value(m, r, v, eps, delta) > audit_p_value(m, r, v, eps, 0.0)


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        epsilon_lower_bound(10, 20, 5, 1e-5)  # more guesses than canaries
    with pytest.raises(ValueError):
        epsilon_lower_bound(100, 10, 11, 1e-5)  # more correct than guesses
    with pytest.raises(ValueError):
        audit_p_value(100, 10, 5, 1.0, 2.0)


def test_guesses_take_the_extremes_and_abstain_elsewhere() -> None:
    scores = np.array([0.5, -3.0, 2.0, 0.1, -1.0, 1.0])
    g = guess(scores, 2, 1)
    assert g.tolist() == [0, -1, 1, 0, 0, 1]
    assert np.count_nonzero(guess(scores, 0, 3)) == 3
    with pytest.raises(ValueError):
        guess(scores, 4, 3)


TINY = Settings(
    rows=10_000,  # about 220 rows in the city's enterprise register
    canaries=200,
    guesses_out=40,
    hidden=32,
    epochs=10,
    expected_batch=64,
    target_epsilons=(2.0,),
)


def test_dpsgd_stays_within_the_accountants_claim(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = audit(TINY, tmp_path)
    dp_run = result["runs"][0]
    assert dp_run["dp"] and dp_run["guesses"] == 40
    settings = result["settings"]
    claimed = dpsgd_epsilon(
        dp_run["noise_multiplier"], settings["sample_rate"], settings["steps"], TINY.delta
    )
    assert result["claimed_epsilon"] == pytest.approx(claimed, rel=1e-2)
    assert claimed <= 2.0
    assert 0 <= result["empirical_epsilon_lower_bound"] <= result["claimed_epsilon"]
    assert dp_run["bound_within_claim"] is True
    assert 0 < result["canaries_included"] < TINY.canaries
    assert math.isfinite(result["empirical_epsilon_lower_bound_without_dp"])


def test_training_without_dp_is_caught(tmp_path: Path) -> None:
    # The same attack has power: without DP, many small steps memorise the canaries and the
    # bound exceeds what a DP run at epsilon 1 could ever show.
    torch.set_num_threads(1)
    settings = Settings(
        rows=10_000,
        canaries=200,
        guesses_out=40,
        hidden=32,
        epochs=200,
        expected_batch=16,
        target_epsilons=(),
        seed=0,  # canaries, inclusion bits, weights and batch order fixed: a reproducible check
    )
    result = audit(settings, tmp_path)
    assert result["claimed_epsilon"] is None
    assert result["correct_without_dp"] >= 35
    assert result["empirical_epsilon_lower_bound_without_dp"] > 1.0
