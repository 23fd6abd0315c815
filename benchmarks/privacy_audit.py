"""Empirical privacy audit of DP-SGD in one training run (Steinke, Nasr, Jagielski 2023).

    python -m benchmarks.privacy_audit [--json] [--quick]

The accountant claims that DP-SGD with noise multiplier sigma, Poisson rate q and T steps is
(epsilon, delta)-DP. This benchmark tests the claim from outside, the way an attacker would:

1. ``m`` canaries are made: feature vectors drawn uniformly over the public domain of the
   generated enterprise-credit register (out of distribution: real firms are concentrated in a
   small corner of it), each with a random label, encoded by the node's own encoding
   (:func:`sandbox.training.encode_column`).
2. Each canary is put into the training set with probability 1/2, independently, from the
   operating system's CSPRNG (:mod:`secrets`); the real rows are always in.
3. One model is trained on the result with the project's DP-SGD
   (:func:`federation.dpsgd.train_local`), once with DP at each claimed epsilon and once
   without DP, with the same canaries, inclusion bits and settings.
4. Each canary gets a membership score: the log-likelihood the trained model gives its label.
   The auditor guesses "in" for the ``guesses_in`` highest scores and "out" for the
   ``guesses_out`` lowest, and abstains on the rest. Members are never confidently wrong, while
   an over-fitted model is confidently wrong on many non-members; the highest scores mix both
   (the model extrapolates confidently), so the default makes "out" guesses only.
5. If training is (epsilon, delta)-DP, the number of correct guesses among the ``r`` made is
   stochastically dominated by Binomial(r, e^epsilon / (1 + e^epsilon)), up to a delta term
   (Theorem 5.2 of the paper). :func:`epsilon_lower_bound` reports the largest epsilon that the
   observed count rejects at 95% confidence: an empirical lower bound on the true epsilon.

A correct DP-SGD gives a bound at or below the claimed epsilon (with probability at least 95%
per run); a bound above it would show a privacy defect (noise too small, clipping missing,
sampling not what the accountant assumes). Without DP the canaries are memorised and the bound
is limited only by the number of guesses. The claimed epsilon is the accountant's
(:func:`federation.accounting.dpsgd_epsilon` for the noise that
:func:`federation.accounting.calibrate_noise_multiplier` picked for the target).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import special, stats
from sklearn.metrics import roc_auc_score

from federation.accounting import calibrate_noise_multiplier, dpsgd_epsilon
from federation.dpsgd import load_weights, train_local
from federation.zoo import build_model
from policies.bounds import check_delta
from sandbox.catalog import ColumnSpec, Manifest, load_catalog, load_frame
from sandbox.generate import generate
from sandbox.training import categorical_sizes, encode_column

CITY_DATASET = "jinan_enterprise"
FEATURES = (
    "industry",
    "employees",
    "registered_capital",
    "years_operating",
    "annual_revenue",
    "tax_paid",
    "tax_arrears_months",
    "insured_employees",
    "avg_contribution_base",
)
LABEL = "default"
CONFIDENCE = 0.95


# --- the statistics of one-run auditing -------------------------------------------------------


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got {v}, {r}, {m}")


def audit_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Largest probability, under (epsilon, delta)-DP, of at least ``v`` correct guesses.

    ``m`` canaries were each included with probability 1/2 and the auditor made ``r`` guesses
    (abstaining on the rest). With ``q = e^eps / (1 + e^eps)`` and ``B ~ Binomial(r, q)``
    (Steinke, Nasr, Jagielski 2023, Theorem 5.2 and Appendix D)::

        P[W >= v] <= P[B >= v] + 2 m delta * max_{1 <= i <= v} P[v - i <= B < v] / i

    >>> round(audit_p_value(100, 10, 10, 0.0, 0.0), 6)  # ten coin flips all right
    0.000977
    >>> audit_p_value(100, 10, 5, 0.0, 0.0) > 0.5
    True
    """
    _check_counts(m, r, v)
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], got {epsilon}, {delta}")
    q = float(special.expit(epsilon))  # accuracy of epsilon-DP randomized response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[B >= v]
    alpha = 0.0
    if delta > 0 and v > 0:
        i = np.arange(1, v + 1)
        below = np.cumsum(stats.binom.pmf(v - i, r, q))  # P[v - i <= B < v]
        alpha = float(np.max(below / i))
    return min(1.0, beta + 2 * m * delta * alpha)


def epsilon_lower_bound(
    m: int, r: int, v: int, delta: float, confidence: float = CONFIDENCE
) -> float:
    """Largest epsilon that ``v`` correct guesses out of ``r`` reject at ``confidence``.

    Training cannot be (epsilon, delta)-DP for any epsilon below the returned value, unless an
    event of probability at most ``1 - confidence`` happened. Zero when the count rejects
    nothing (for instance random guessing).

    >>> epsilon_lower_bound(1000, 100, 50, 1e-5)
    0.0
    >>> round(epsilon_lower_bound(1000, 100, 100, 0.0), 2)
    3.49
    """
    _check_counts(m, r, v)
    p = 1.0 - confidence
    if audit_p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    low, high = 0.0, 1.0
    while audit_p_value(m, r, v, high, delta) < p:
        low, high = high, 2 * high
        if high > 1e3:
            return low
    for _ in range(60):
        mid = (low + high) / 2
        if audit_p_value(m, r, v, mid, delta) < p:
            low = mid
        else:
            high = mid
    return low


def guess(scores: np.ndarray, k_in: int, k_out: int) -> np.ndarray:
    """+1 ("in") for the ``k_in`` highest scores, -1 ("out") for the ``k_out`` lowest, 0
    (abstain) for the rest.

    >>> guess(np.array([0.3, -2.0, 0.9, 0.1]), 1, 2).tolist()
    [0, -1, 1, -1]
    """
    if k_in < 0 or k_out < 0 or k_in + k_out > len(scores):
        raise ValueError(f"cannot make {k_in} + {k_out} guesses about {len(scores)} canaries")
    order = np.argsort(scores, kind="stable")
    out = np.zeros(len(scores), dtype=np.int8)
    out[order[:k_out]] = -1
    if k_in:
        out[order[-k_in:]] = 1
    return out


# --- canaries and data ------------------------------------------------------------------------


def _uniform_on_model_scale(spec: ColumnSpec, u: np.ndarray) -> np.ndarray:
    """Raw values whose encoding is (about) ``u``: uniform on the scale the model sees."""
    low, high = (float(b) for b in spec.bounds)  # type: ignore[union-attr]
    span = high - low
    grid = np.unique(
        np.concatenate(
            [np.linspace(low, high, 4001), low + np.geomspace(min(1e-3, span), span, 4001)]
        )
    )
    encoded = encode_column(spec, grid).astype(float)
    raw = np.interp(u, encoded, grid)
    if spec.type == "int":
        raw = np.round(raw)
    return raw


def make_canaries(
    manifest: Manifest, features: Sequence[str], m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` canary rows (encoded like real rows) and their random 0/1 labels."""
    columns = []
    for name in features:
        spec = manifest.column(name)
        if spec.categories is not None:
            raw = np.array(spec.categories, dtype=object)[
                rng.integers(len(spec.categories), size=m)
            ]
        else:
            raw = _uniform_on_model_scale(spec, rng.random(m))
        columns.append(encode_column(spec, raw))
    X = np.column_stack(columns).astype(np.float32)
    y = rng.integers(0, 2, size=m).astype(np.float32)
    return X, y


def load_credit_data(rows: int, workdir: Path) -> tuple[Manifest, np.ndarray, np.ndarray]:
    """Generate the catalog into ``workdir`` and encode one city's enterprise register."""
    generate(workdir, rows=rows, seed=0)
    manifest = load_catalog(workdir)[CITY_DATASET]
    frame = load_frame(manifest)
    X = np.column_stack(
        [encode_column(manifest.column(f), frame[f].to_numpy()) for f in FEATURES]
    ).astype(np.float32)
    y = frame[LABEL].to_numpy().astype(np.float32)
    return manifest, X, y


# --- one audit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything that is fixed before the canaries and inclusion bits are drawn."""

    rows: int = 100_000  # persons of the generated catalog; the city's register gets ~2.2%
    canaries: int = 1000
    guesses_in: int = 0  # "in" guesses on the highest scores
    guesses_out: int = 200  # "out" guesses on the lowest scores
    model: str = "mlp"
    hidden: int = 128
    layers: int = 2
    epochs: int = 400
    expected_batch: int = 128
    learning_rate: float = 0.5
    max_grad_norm: float = 1.0
    delta: float = 1e-5
    target_epsilons: tuple[float, ...] = (2.0, 8.0)
    #: For reproducible tests only: fixes the canaries, the inclusion bits, the initial weights
    #: and (without DP) the batch order. DP noise and sampling are never seeded. The benchmark
    #: leaves it unset, so all of these come from the OS CSPRNG.
    seed: int | None = None


FULL = Settings()
QUICK = Settings(
    rows=60_000, canaries=300, guesses_out=60, hidden=64, epochs=300, target_epsilons=(2.0,)
)


def _scores(model: torch.nn.Module, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Log-likelihood of each row's label under the model (higher: more likely a member)."""
    model.eval()
    with torch.no_grad():
        ll = -torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.as_tensor(X)), torch.as_tensor(y), reduction="none"
        )
    return ll.numpy().astype(float)


def _model_params(settings: Settings) -> dict[str, int]:
    if settings.model == "mlp":
        return {"hidden": settings.hidden, "layers": settings.layers}
    if settings.model == "tab_embed":
        return {"hidden": settings.hidden}
    return {}


def _train(
    settings: Settings,
    categorical: dict[str, int],
    X: np.ndarray,
    y: np.ndarray,
    *,
    dp: bool,
    sample_rate: float,
    steps: int,
    noise_multiplier: float,
) -> torch.nn.Module:
    """One training run with the project's DP-SGD (or plain SGD); returns the final model."""
    # Initial weights only; DP noise and sampling are never ours to set.
    init_seed = secrets.randbits(31) if settings.seed is None else settings.seed
    params = _model_params(settings)
    model = build_model(settings.model, FEATURES, categorical, params, seed=init_seed)
    trained = train_local(
        model,
        X,
        y,
        dp=dp,
        sample_rate=sample_rate,
        steps=steps,
        noise_multiplier=noise_multiplier,
        max_grad_norm=settings.max_grad_norm,
        learning_rate=settings.learning_rate,
        seed=None if dp else settings.seed,
    )
    final = build_model(settings.model, FEATURES, categorical, params, seed=init_seed)
    load_weights(final, trained.state_dict)
    return final


def audit(settings: Settings, workdir: Path) -> dict:
    """Run the audit (one training run per DP setting, one without DP); JSON-ready figures."""
    started = time.perf_counter()
    manifest, X_real, y_real = load_credit_data(settings.rows, workdir)
    categorical = categorical_sizes(load_catalog(workdir), CITY_DATASET, FEATURES)
    m = settings.canaries
    # The canaries' design may come from any generator; the inclusion bits come from the CSPRNG.
    if settings.seed is None:
        draws = np.random.default_rng(secrets.randbits(128))
        member = np.array([secrets.randbits(1) for _ in range(m)], dtype=bool)
    else:
        draws = np.random.default_rng(settings.seed)
        member = np.random.default_rng(settings.seed + 1).integers(0, 2, m).astype(bool)
    X_can, y_can = make_canaries(manifest, FEATURES, m, draws)
    truth = np.where(member, 1, -1)
    X = np.concatenate([X_real, X_can[member]])
    y = np.concatenate([y_real, y_can[member]])
    # Sampling rate from the public size: the real rows plus the expected number of canaries.
    public_rows = len(y_real) + m // 2
    check_delta(settings.delta, rows=public_rows)
    sample_rate = min(1.0, settings.expected_batch / public_rows)
    steps = math.ceil(settings.epochs / sample_rate)

    def one(target: float | None) -> dict:
        t0 = time.perf_counter()
        dp = target is not None
        sigma = 0.0
        if dp:
            sigma = calibrate_noise_multiplier(target, settings.delta, sample_rate, steps)
        model = _train(
            settings,
            categorical,
            X,
            y,
            dp=dp,
            sample_rate=sample_rate,
            steps=steps,
            noise_multiplier=sigma,
        )
        scores = _scores(model, X_can, y_can)
        guesses = guess(scores, settings.guesses_in, settings.guesses_out)
        r = int(np.count_nonzero(guesses))
        v = int(np.count_nonzero(guesses == truth))
        bound = epsilon_lower_bound(m, r, v, settings.delta)
        run: dict = {"dp": dp}
        if dp:
            claimed = dpsgd_epsilon(sigma, sample_rate, steps, settings.delta)
            run |= {
                "target_epsilon": target,
                "claimed_epsilon": round(claimed, 4),
                "noise_multiplier": round(sigma, 4),
                "bound_within_claim": bound <= claimed,
            }
        real_auc = roc_auc_score(y_real, _scores(model, X_real, np.ones_like(y_real)))
        return run | {
            "guesses": r,
            "correct": v,
            "empirical_epsilon_lower_bound": round(bound, 3),
            "membership_auc": round(float(roc_auc_score(member, scores)), 3),
            "training_rows_auc": round(float(real_auc), 3),
            "train_s": round(time.perf_counter() - t0, 1),
        }

    with_dp = [one(target) for target in settings.target_epsilons]
    without_dp = one(None)
    first = with_dp[0] if with_dp else {}  # the headline figures are the first claim's
    r = without_dp["guesses"]
    return {
        "claimed_epsilon": first.get("claimed_epsilon"),
        "delta": settings.delta,
        "canaries": m,
        "canaries_included": int(member.sum()),
        "guesses": r,
        "correct_with_dp": first.get("correct"),
        "empirical_epsilon_lower_bound": first.get("empirical_epsilon_lower_bound"),
        "correct_without_dp": without_dp["correct"],
        "empirical_epsilon_lower_bound_without_dp": without_dp["empirical_epsilon_lower_bound"],
        "largest_bound_possible": round(epsilon_lower_bound(m, r, r, settings.delta), 3),
        "confidence": CONFIDENCE,
        "runs": [*with_dp, without_dp],
        "settings": {
            **asdict(settings),
            "dataset": CITY_DATASET,
            "features": list(FEATURES),
            "real_rows": len(y_real),
            "sample_rate": round(sample_rate, 6),
            "steps": steps,
            "membership_score": "log-likelihood of the canary's label under the final model",
        },
        "runtime_s": round(time.perf_counter() - started, 1),
    }


def table(result: dict) -> str:
    """The runs of ``result`` as a short text table."""
    s = result["settings"]
    lines = [
        f"one-run audit: {result['canaries']} canaries ({result['canaries_included']} in), "
        f"{result['guesses']} guesses, delta {result['delta']:g}, {s['steps']} steps at q "
        f"{s['sample_rate']:.4f}, {s['model']} on {s['real_rows']} rows of {s['dataset']}",
        f"{'run':<16}{'sigma':>8}{'correct':>10}{'eps lower bound':>18}{'membership AUC':>16}",
    ]
    for run in result["runs"]:
        name = f"DP eps {run['claimed_epsilon']:.3g}" if run["dp"] else "without DP"
        sigma = f"{run['noise_multiplier']:.3f}" if run["dp"] else "-"
        correct = f"{run['correct']}/{run['guesses']}"
        lines.append(
            f"{name:<16}{sigma:>8}{correct:>10}{run['empirical_epsilon_lower_bound']:>18.3f}"
            f"{run['membership_auc']:>16.3f}"
        )
    lines.append(
        f"largest bound {result['guesses']} guesses can show: {result['largest_bound_possible']}"
        f" (95% confidence); runtime {result['runtime_s']} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--quick", action="store_true", help="fewer canaries, rows and epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="privacy-audit-") as tmp:
        result = audit(QUICK if args.quick else FULL, Path(tmp))
    result["quick"] = args.quick
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
