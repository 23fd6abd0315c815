"""Federated training benchmark: utility against centralized training, DP at epsilon 3 and 1,
per-round overhead of the Flower simulation engine, and time to reach the centralized metric.

    python -m benchmarks.federation --json [--quick]

Tasks: the generated enterprise-credit register partitioned by city (non-IID; metric AUC,
defaults are rare) and the PUMS sample predicting ``married`` partitioned by ``race``
(metric accuracy). Every figure is measured in this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import torch
from sklearn.metrics import roc_auc_score

from federation.accounting import PrivacyCost
from federation.dpsgd import load_weights, predict_proba, train_local
from federation.job import JobSpec
from federation.loader import NodeData
from federation.result import TrainingResult
from federation.simulation import run_simulation
from federation.synthetic import (
    SYNTHETIC_CATEGORICAL,
    SYNTHETIC_FEATURES,
    SyntheticLoader,
)
from federation.zoo import build_model

PUMS = Path(__file__).resolve().parents[1] / "examples" / "pums" / "pums.csv"
CITIES = ("jinan", "qingdao", "rizhao", "dezhou")
INDUSTRIES = (  # public code list of the register's industry column
    "交通运输、仓储和邮政业",
    "住宿和餐饮业",
    "信息传输、软件和信息技术服务业",
    "农林牧渔业",
    "制造业",
    "建筑业",
    "房地产业",
    "批发和零售业",
    "租赁和商务服务业",
    "科学研究和技术服务业",
)
ENTERPRISE_FEATURES = (
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
PUMS_FEATURES = ("age", "sex", "educ", "income")


def _split(X: np.ndarray, y: np.ndarray, key: str, names: tuple[str, ...], cat: dict) -> NodeData:
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    tr, te = order[:cut], order[cut:]
    return NodeData(X[tr], y[tr], X[te], y[te], names, cat)


@dataclass(frozen=True)
class EnterpriseLoader:
    """One city's enterprise register, scaled with fixed public transforms (log1p / bound)."""

    rows: int = 2000
    seed: int = 0

    def __call__(self, node_id: str) -> NodeData:
        return _enterprise(node_id, self.rows, self.seed)


@lru_cache(maxsize=8)
def _enterprise(city: str, rows: int, seed: int) -> NodeData:
    from sandbox.generate import enterprise_frame

    f = enterprise_frame(city, rows, seed)
    code = {name: i for i, name in enumerate(INDUSTRIES)}
    cols = [np.array([code.get(v, 0) for v in f["industry"].to_list()], dtype=np.float32)]
    for c in ENTERPRISE_FEATURES[1:]:
        v = np.clip(f[c].to_numpy().astype(np.float64), 0, None)
        if c == "years_operating":
            cols.append(np.minimum(v, 50) / 50)
        elif c == "tax_arrears_months":
            cols.append(np.minimum(v, 24) / 24)
        else:
            cols.append(np.log1p(v) / 15)
    X = np.column_stack(cols).astype(np.float32)
    y = f["default"].to_numpy().astype(np.float32)
    return _split(X, y, f"ent/{city}", ENTERPRISE_FEATURES, {"industry": len(INDUSTRIES)})


@dataclass(frozen=True)
class PumsLoader:
    """PUMS rows of one race group (5 and 6 merged into 4): predict ``married``."""

    path: str = str(PUMS)

    def __call__(self, node_id: str) -> NodeData:
        return _pums(self.path, node_id)


@lru_cache(maxsize=8)
def _pums(path: str, node_id: str) -> NodeData:
    f = pl.read_csv(path, schema_overrides={"income": pl.Float64})
    race = f["race"].to_numpy()
    group = np.where(race >= 4, 4, race)
    keep = group == int(node_id.removeprefix("race"))
    g = f.filter(pl.Series(keep))
    X = np.column_stack(
        [
            np.clip(g["age"].to_numpy(), 0, 100) / 100,
            g["sex"].to_numpy(),
            np.clip(g["educ"].to_numpy(), 1, 16) - 1,
            np.log1p(np.clip(g["income"].to_numpy(), 0, None)) / 15,
        ]
    ).astype(np.float32)
    y = g["married"].to_numpy().astype(np.float32)
    return _split(X, y, f"pums/{node_id}", PUMS_FEATURES, {"sex": 2, "educ": 16})


TASKS = {
    "enterprise_credit_by_city": {
        "loader": EnterpriseLoader,
        "nodes": CITIES,
        "features": ENTERPRISE_FEATURES,
        "categorical": {"industry": len(INDUSTRIES)},
        "label": "default",
        "metric": "auc",
        "learning_rate": 0.5,
    },
    "pums_married_by_race": {
        "loader": PumsLoader,
        "nodes": ("race1", "race2", "race3", "race4"),
        "features": PUMS_FEATURES,
        "categorical": {"sex": 2, "educ": 16},
        "label": "married",
        "metric": "accuracy",
        "learning_rate": 0.1,
    },
}

#: Rounds of the federated jobs (one local epoch each) = epochs of the centralized baseline.
ROUNDS = {"quick": 40, "full": 60}
SAMPLE_RATE = 0.05  # per node; the centralized batch has the same expected size
SERVER_MOMENTUM = 0.9
#: DP jobs: fewer epochs (less noise per step for the same epsilon) and lighter server momentum
#: (momentum also accumulates the DP noise). Chosen by an in-process sweep on enterprise credit.
DP_ROUNDS = 10
DP_SERVER_MOMENTUM = 0.5


def _metric(kind: str, y: np.ndarray, p: np.ndarray) -> float:
    """``p``: positive-class probabilities (binary, shape (n,)) or class probabilities (K-class,
    shape (n, K); accuracy of the most probable class)."""
    if p.ndim == 2:
        if kind != "accuracy":
            raise ValueError("a multi-class task is measured by accuracy (AUC is binary)")
        return float((p.argmax(axis=1) == y.astype(int)).mean())
    if kind == "auc":
        return float(roc_auc_score(y, p))
    return float(((p >= 0.5) == (y == 1)).mean())


def _evaluate(spec: JobSpec, weights: dict, X: np.ndarray, y: np.ndarray, kind: str) -> float:
    model = build_model(
        spec.model, spec.features, spec.categorical, spec.model_params, num_classes=spec.num_classes
    )
    load_weights(model, {k: torch.as_tensor(v) for k, v in weights.items()})
    return _metric(kind, y, predict_proba(model, X))


def _completed(result: TrainingResult) -> TrainingResult:
    if result.status != "completed":
        raise RuntimeError(f"job aborted: {result.abort_reason}; failures: {result.failures}")
    return result


def centralized(
    spec: JobSpec, X: np.ndarray, y: np.ndarray, X_te: np.ndarray, y_te: np.ndarray, kind: str
) -> list[tuple[float, float]]:
    """The same model, encoding, learning rate and batch size trained by SGD on the union of the
    nodes' training rows, for as many epochs as the federated job has rounds x local epochs.
    Returns (training seconds so far, held-out metric) after every epoch."""
    model = build_model(spec.model, spec.features, spec.categorical, spec.model_params, seed=0)
    nodes = len(spec.nodes)
    q = SAMPLE_RATE / nodes  # the batch of one node's step: SAMPLE_RATE * rows / nodes
    curve, elapsed = [], 0.0
    for epoch in range(round(spec.rounds * spec.local_epochs)):
        t0 = time.perf_counter()
        train_local(
            model,
            X,
            y,
            dp=False,
            sample_rate=q,
            steps=round(1 / q),
            noise_multiplier=0.0,
            max_grad_norm=spec.max_grad_norm,
            learning_rate=spec.learning_rate,
            seed=epoch,
        )
        elapsed += time.perf_counter() - t0
        curve.append((elapsed, _metric(kind, y_te, predict_proba(model, X_te))))
    return curve


def _first(curve: list[tuple[float, float]], target: float, offset: float = 0.0) -> float | None:
    return next((round(t - offset, 2) for t, m in curve if m >= target), None)


def run_task(name: str, quick: bool) -> dict:
    task = TASKS[name]
    loader = (
        task["loader"](rows=1000) if name.startswith("enterprise") and quick else task["loader"]()
    )
    datas = {n: loader(n) for n in task["nodes"]}
    X_tr = np.concatenate([d.X_train for d in datas.values()])
    y_tr = np.concatenate([d.y_train for d in datas.values()])
    X_te = np.concatenate([d.X_test for d in datas.values()])
    y_te = np.concatenate([d.y_test for d in datas.values()])
    spec = JobSpec(
        model="mlp",
        model_params={"hidden": 32, "layers": 1},
        features=task["features"],
        categorical=task["categorical"],
        label=task["label"],
        nodes=task["nodes"],
        rounds=ROUNDS["quick" if quick else "full"],
        local_epochs=1.0,
        sample_rate=SAMPLE_RATE,
        learning_rate=task["learning_rate"],
        strategy="fedavgm",
        server_momentum=SERVER_MOMENTUM,
        max_grad_norm=1.0,
        dp=False,
        min_nodes=2,
        seed=0,
    )
    kind = task["metric"]

    # Centralized baseline on the union: its final model, no selection on the test set.
    central_curve = centralized(spec, X_tr, y_tr, X_te, y_te, kind)
    central = central_curve[-1][1]
    target = central - 0.01

    # Federated without DP, timing each round's metric.
    curve: list[tuple[float, float]] = []
    start = time.perf_counter()

    def on_round(rnd: int, weights: dict) -> None:
        curve.append((time.perf_counter() - start, _evaluate(spec, weights, X_te, y_te, kind)))

    fed = _completed(
        run_simulation(spec, loader, budget=None, allow_non_private=True, on_round=on_round)
    )
    federated = _evaluate(spec, fed.weights, X_te, y_te, kind)
    first_round_s = curve[0][0]
    out = {
        "metric": kind,
        "rows_train": int(len(y_tr)),
        "rows_test": int(len(y_te)),
        "rounds": spec.rounds,
        "learning_rate": spec.learning_rate,
        "central_metric": round(central, 4),
        "central_metric_half_epochs": round(central_curve[len(central_curve) // 2 - 1][1], 4),
        "central_last5_mean": round(float(np.mean([m for _, m in central_curve[-5:]])), 4),
        "federated_metric": round(federated, 4),
        "federated_last5_mean": round(float(np.mean([m for _, m in curve[-5:]])), 4),
        "federated_best_round_metric": round(max(m for _, m in curve), 4),
        "gap_federated_to_central": round(federated - central, 4),
        "central_s_to_target": _first(central_curve, target),
        "federated_s_to_target": _first(curve, target),
        "federated_s_to_target_after_round1": _first(curve, target, first_round_s),
        "federated_round_to_target": next(
            (i + 1 for i, (_, m) in enumerate(curve) if m >= target), None
        ),
        "federated_s_first_round_done": round(first_round_s, 2),
        "federated_s_total": round(curve[-1][0], 2),
    }
    for eps in (3.0, 1.0):
        dp_spec = spec.model_copy(
            update={
                "dp": True,
                "target_epsilon": eps,
                "rounds": DP_ROUNDS,
                "server_momentum": DP_SERVER_MOMENTUM,
            }
        )
        res = _completed(run_simulation(dp_spec, loader, budget=PrivacyCost(eps, 1e-5)))
        metric = _evaluate(dp_spec, res.weights, X_te, y_te, kind)
        out[f"dp_metric_eps{int(eps)}"] = round(metric, 4)
        out[f"dp_eps{int(eps)}_gap_to_federated"] = round(metric - federated, 4)
        out[f"dp_eps{int(eps)}_spent_max"] = round(max(c.epsilon for c in res.spent.values()), 4)
        out[f"dp_eps{int(eps)}_noise_multiplier"] = round(
            max(p for p in _sigmas(dp_spec).values()), 4
        )
        out[f"dp_eps{int(eps)}_card_accuracy"] = res.model_card.dp_test_accuracy
    return out


def _sigmas(spec: JobSpec) -> dict[str, float]:
    from federation.accounting import plan_job

    return {n: p.noise_multiplier for n, p in plan_job(spec).nodes.items()}


def overhead(nodes: int, rounds: int) -> dict:
    """Per-round wall time minus the slowest node's compute, rounds 2..R (round 1 includes
    worker warm-up), on small synthetic nodes."""
    spec = JobSpec(
        model="logreg",
        features=SYNTHETIC_FEATURES,
        categorical=SYNTHETIC_CATEGORICAL,
        label="y",
        nodes=tuple(f"n{i}" for i in range(nodes)),
        rounds=rounds,
        sample_rate=0.1,
        target_epsilon=3.0,
        min_nodes=nodes,
    )
    t0 = time.perf_counter()
    res = _completed(run_simulation(spec, SyntheticLoader(rows=200), budget=PrivacyCost(3.0, 1e-5)))
    total = time.perf_counter() - t0
    later = res.rounds[1:]
    workers = max(1, int(os.cpu_count() or 1))
    return {
        "round_overhead_s": round(float(np.mean([r.overhead_s for r in later])), 4),
        "round_wall_s": round(float(np.mean([r.wall_s for r in later])), 4),
        "slowest_node_compute_s": round(float(np.mean([r.max_compute_s for r in later])), 4),
        "overhead_beyond_parallel_compute_s": round(
            float(np.mean([r.wall_s - r.sum_compute_s / workers for r in later])), 4
        ),
        "simulation_total_s": round(total, 2),
    }


# --- defaults-only figures ----------------------------------------------------------------
# Every job below is built by JobSpec.with_defaults(rows, epsilon) with the task's columns
# only: no tuned flag. The centralized baseline trains the same model with the same learning
# rate and batch size on the union of the nodes' training rows for as many epochs as the
# federated job has rounds. Jobs run in this process (federation.inprocess: the same
# ServerApp and ClientApp as the simulation, without Ray).

INCOME_FEATURES = ("age", "sex", "educ", "race", "married")
INCOME_CATEGORICAL = {"sex": 2, "educ": 16, "race": 6, "married": 2}
INCOME_NODES = ("n0", "n1", "n2", "n3")


@lru_cache(maxsize=1)
def _income_source() -> tuple[np.ndarray, np.ndarray]:
    f = pl.read_csv(PUMS, schema_overrides={"income": pl.Float64})
    X = np.column_stack(
        [
            np.clip(f["age"].to_numpy(), 0, 100) / 100,
            f["sex"].to_numpy(),
            np.clip(f["educ"].to_numpy(), 1, 16) - 1,
            np.clip(f["race"].to_numpy(), 1, 6) - 1,
            f["married"].to_numpy(),
        ]
    ).astype(np.float32)
    return X, (f["income"].to_numpy() > 50_000).astype(np.float32)


@lru_cache(maxsize=1)
def _income_labeller() -> object:
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = _income_source()
    return GradientBoostingClassifier(max_depth=2, n_estimators=50, random_state=0).fit(X, y)


@dataclass(frozen=True)
class IncomeLoader:
    """PUMS-like adult income (label: income above 50,000, i.e. ">50K"), ``rows`` per node.

    The 1,000 real PUMS rows are too few for 20,000-row nodes, so each node draws people from
    them (age jittered by about 3 years) and labels each drawn person with the probability a
    small gradient-boosted model fitted on the real rows gives: the same features, label
    balance (about 22% positive) and label noise as the real sample, at any size.
    """

    rows: int = 1000

    def __call__(self, node_id: str) -> NodeData:
        return _income(node_id, self.rows)


@lru_cache(maxsize=16)
def _income(node_id: str, rows: int) -> NodeData:
    X0, _ = _income_source()
    rng = np.random.default_rng(zlib.crc32(f"income/{node_id}".encode()))
    X = X0[rng.integers(0, len(X0), rows)].copy()
    X[:, 0] = np.clip(X[:, 0] + rng.normal(0, 0.03, rows), 0.18, 1.0)
    p = _income_labeller().predict_proba(X)[:, 1]  # type: ignore[attr-defined]
    y = (rng.random(rows) < p).astype(np.float32)
    return _split(X, y, f"income/{node_id}", INCOME_FEATURES, INCOME_CATEGORICAL)


#: The multi-class task: PUMS education level (from ``educ``, 1..16) in four classes.
EDUCATION_CLASSES = ("below_high_school", "high_school", "some_college", "bachelor_or_higher")
EDUCATION_FEATURES = ("age", "race", "income", "married")
EDUCATION_CATEGORICAL = {"race": 6, "married": 2}


def education_level(educ: np.ndarray) -> np.ndarray:
    """Class index of :data:`EDUCATION_CLASSES`: educ 1-8 below high school, 9 high school
    graduate, 10-12 some college or associate degree, 13-16 bachelor's degree or higher."""
    return np.digitize(np.clip(educ, 1, 16), [9, 10, 13]).astype(np.float32)


@dataclass(frozen=True)
class EducationLoader:
    """The real PUMS rows of one sex (nodes ``sex0``, ``sex1``): predict the education level
    (:data:`EDUCATION_CLASSES`) from age, race, income and marital status."""

    path: str = str(PUMS)

    def __call__(self, node_id: str) -> NodeData:
        return _education(self.path, node_id)


@lru_cache(maxsize=4)
def _education(path: str, node_id: str) -> NodeData:
    f = pl.read_csv(path, schema_overrides={"income": pl.Float64})
    g = f.filter(pl.col("sex") == int(node_id.removeprefix("sex")))
    X = np.column_stack(
        [
            np.clip(g["age"].to_numpy(), 0, 100) / 100,
            np.clip(g["race"].to_numpy(), 1, 6) - 1,
            np.log1p(np.clip(g["income"].to_numpy(), 0, None)) / 15,
            g["married"].to_numpy(),
        ]
    ).astype(np.float32)
    y = education_level(g["educ"].to_numpy())
    return _split(X, y, f"educ/{node_id}", EDUCATION_FEATURES, EDUCATION_CATEGORICAL)


def default_tasks(quick: bool) -> dict[str, dict]:
    """The tasks of the defaults-only figures (the income task at 1,000 and 25,000 rows per
    node: 800 and 20,000 training rows; the multi-class education task on the 1,000 real PUMS
    rows split by sex, about 390 training rows per node)."""
    big = 5_000 if quick else 25_000
    return {
        "pums_education_4_classes_by_sex": {
            "loader": EducationLoader,
            "loader_args": {},
            "nodes": ("sex0", "sex1"),
            "features": EDUCATION_FEATURES,
            "categorical": EDUCATION_CATEGORICAL,
            "label": "education_level",
            "classes": EDUCATION_CLASSES,
            "metric": "accuracy",
        },
        "enterprise_credit_by_city": {**TASKS["enterprise_credit_by_city"], "loader_args": {}},
        "pums_married_by_race": {**TASKS["pums_married_by_race"], "loader_args": {}},
        "income_800_rows_per_node": {
            "loader": IncomeLoader,
            "loader_args": {"rows": 1000},
            "nodes": INCOME_NODES,
            "features": INCOME_FEATURES,
            "categorical": INCOME_CATEGORICAL,
            "label": "income_over_50k",
            "metric": "accuracy",
        },
        f"income_{big * 4 // 5}_rows_per_node": {
            "loader": IncomeLoader,
            "loader_args": {"rows": big},
            "nodes": INCOME_NODES,
            "features": INCOME_FEATURES,
            "categorical": INCOME_CATEGORICAL,
            "label": "income_over_50k",
            "metric": "accuracy",
        },
    }


def run_defaults_task(task: dict) -> dict:
    """central_metric, federated_metric and dp_metric_eps3 with default settings only."""
    from federation.inprocess import run_inprocess

    loader = task["loader"](**task["loader_args"])
    datas = {n: loader(n) for n in task["nodes"]}
    X_tr = np.concatenate([d.X_train for d in datas.values()])
    y_tr = np.concatenate([d.y_train for d in datas.values()])
    X_te = np.concatenate([d.X_test for d in datas.values()])
    y_te = np.concatenate([d.y_test for d in datas.values()])
    rows = min(len(d.y_train) for d in datas.values())  # the smallest node decides
    kind = task["metric"]
    job = {
        "model": "mlp",
        "model_params": {"hidden": 32, "layers": 1},
        "features": task["features"],
        "categorical": task["categorical"],
        "label": task["label"],
        "nodes": task["nodes"],
    }
    if task.get("classes"):
        job["classes"] = tuple(task["classes"])
    spec = JobSpec.with_defaults(rows, None, **job)
    shares = np.bincount(y_te.astype(int), minlength=spec.num_classes) / len(y_te)
    out: dict = {
        "metric": kind,
        "classes": spec.num_classes,
        "rows_per_node_train_min": rows,
        "rows_train": int(len(y_tr)),
        "rows_test": int(len(y_te)),
        "majority_baseline_accuracy": round(float(shares.max()), 4),
        "defaults_non_private": {
            k: v for k, v in spec.model_dump().items() if k in _SETTINGS and v is not None
        },
    }
    t0 = time.perf_counter()
    curve = centralized_defaults(spec, X_tr, y_tr, X_te, y_te, kind)
    out["central_metric"] = round(curve, 4)
    out["central_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    fed = _completed(run_inprocess(spec, loader, budget=None, allow_non_private=True))
    out["federated_metric"] = round(_evaluate(spec, fed.weights, X_te, y_te, kind), 4)
    out["federated_s"] = round(time.perf_counter() - t0, 1)
    dp_spec = JobSpec.with_defaults(rows, 3.0, **job)
    out["defaults_dp_eps3"] = {
        k: v for k, v in dp_spec.model_dump().items() if k in _SETTINGS and v is not None
    }
    t0 = time.perf_counter()
    res = _completed(run_inprocess(dp_spec, loader, budget=PrivacyCost(3.0, 1e-5)))
    out["dp_metric_eps3"] = round(_evaluate(dp_spec, res.weights, X_te, y_te, kind), 4)
    out["dp_s"] = round(time.perf_counter() - t0, 1)
    out["dp_eps3_spent_max"] = round(max(c.epsilon for c in res.spent.values()), 4)
    card = res.model_card
    if card is not None:
        out["dp_eps3_card"] = {
            "dp_test_accuracy": card.dp_test_accuracy,
            "dp_test_auc": card.dp_test_auc,
            "dp_majority_baseline": card.dp_majority_baseline,
            "warnings": list(card.warnings),
        }
    out["gap_federated_to_central"] = round(out["federated_metric"] - out["central_metric"], 4)
    out["gap_dp_eps3_to_federated"] = round(out["dp_metric_eps3"] - out["federated_metric"], 4)
    return out


_SETTINGS = (
    "rounds",
    "local_epochs",
    "sample_rate",
    "learning_rate",
    "strategy",
    "server_momentum",
    "max_grad_norm",
    "target_epsilon",
)


def centralized_defaults(
    spec: JobSpec, X: np.ndarray, y: np.ndarray, X_te: np.ndarray, y_te: np.ndarray, kind: str
) -> float:
    """The centralized baseline of a defaults job: final held-out metric (no selection)."""
    k = spec.num_classes
    model = build_model(
        spec.model, spec.features, spec.categorical, spec.model_params, seed=0, num_classes=k
    )
    q = (spec.sample_rate or 0.05) / len(spec.nodes)  # the same expected batch as one node's
    for epoch in range(round(spec.rounds * spec.local_epochs)):
        train_local(
            model,
            X,
            y,
            dp=False,
            sample_rate=q,
            steps=round(1 / q),
            noise_multiplier=0.0,
            max_grad_norm=spec.max_grad_norm,
            learning_rate=spec.learning_rate,
            seed=epoch,
            num_classes=k,
        )
    return _metric(kind, y_te, predict_proba(model, X_te))


#: The deployment set-ups the benchmark compares (see docs/deployment.md):
#: ``executor``: the sandbox's (each SuperNode in process isolation with its long-lived
#: ClientApp executor), Flower unchanged; ``subprocess``: Flower's default, a ``flwr-clientapp``
#: process per message; ``proposed``: the sandbox's with the upstream change proposed in
#: docs/deployment.md applied (benchmarks/flower_proposal: the SuperNode's pull interval and
#: Flower's object-pull backoff at 0.02 s).
DEPLOYMENT_VARIANTS = ("executor", "subprocess", "proposed")
PROPOSED_INTERVAL_S = "0.02"


def _variant_options(variant: str) -> dict:
    if variant == "executor":
        return {}
    if variant == "subprocess":
        return {"isolation": "subprocess"}
    root = Path(__file__).resolve().parent.parent
    return {
        "supernode_command": (sys.executable, "-m", "benchmarks.flower_proposal.supernode"),
        "env_extra": {
            "PYTHONPATH": os.pathsep.join([str(root / "benchmarks/flower_proposal"), str(root)]),
            "FLWR_SUPERNODE_PULL_INTERVAL": PROPOSED_INTERVAL_S,
            "FLWR_PULL_INITIAL_BACKOFF": PROPOSED_INTERVAL_S,
        },
    }


def deployment_overhead(nodes: int, rounds: int, variant: str = "executor") -> dict:
    """The same figure over real Flower deployment processes on loopback: a SuperLink with TLS
    from a new sandbox CA and SuperNode authentication, ``nodes`` SuperNodes, each checking
    every message against the signed instruction its node accepted (sandbox.deployment); 200
    rows per node, rounds 2..R; ``variant`` is one of :data:`DEPLOYMENT_VARIANTS`."""
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sandbox.deployment.processes import Federation
    from sandbox.deployment.runner import run_deployed
    from tests.deployment.departments import FEATURES, GRANT, Department, grant

    names = tuple(f"d{i}" for i in range(nodes))
    spec = JobSpec(
        model="logreg",
        features=FEATURES,
        label="default",
        nodes=names,
        rounds=rounds,
        sample_rate=0.5,
        noise_multiplier=2.0,
        target_delta=1e-6,
        min_nodes=nodes,
        round_timeout_s=120.0,
    )
    authority, the_grant = Ed25519PrivateKey.generate(), grant(names)
    options = _variant_options(variant)
    isolation = options.pop("isolation", "process")
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        with Federation(work / "flower", **options) as federation:
            federation.start_superlink()
            depts = {}
            for i, name in enumerate(names):
                depts[name] = Department.create(work / name, name, i, authority, the_grant)
                federation.start_supernode(name, depts[name].node_config, isolation=isolation)
            federation.wait_connected(nodes, timeout=120)
            started = time.perf_counter() - t0
            signed = {n: d.accept(spec) for n, d in depts.items()}
            t1 = time.perf_counter()
            res = _completed(run_deployed(federation, spec, dict.fromkeys(names, GRANT), signed))
            total = time.perf_counter() - t1
    later = res.rounds[1:] or res.rounds
    return {
        "variant": variant,
        "round_overhead_s": round(float(np.mean([r.overhead_s for r in later])), 4),
        "round_wall_s": round(float(np.mean([r.wall_s for r in later])), 4),
        "slowest_node_compute_s": round(float(np.mean([r.max_compute_s for r in later])), 4),
        "per_round_overhead_s": [round(r.overhead_s, 3) for r in res.rounds],
        "processes_start_s": round(started, 2),
        "job_total_s": round(total, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and rows")
    parser.add_argument(
        "--defaults-only",
        action="store_true",
        help="only the defaults figures (JobSpec.with_defaults), no tuned runs or overhead",
    )
    parser.add_argument(
        "--deployment",
        action="store_true",
        help="only the round overhead: simulation and real Flower processes (4 nodes, TLS)",
    )
    parser.add_argument(
        "--task",
        action="append",
        choices=sorted(default_tasks(False)) + sorted(default_tasks(True)),
        help="with --defaults-only: only this defaults task (repeatable)",
    )
    args = parser.parse_args(argv)
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "quick": args.quick,
    }
    started = time.perf_counter()
    if args.deployment:
        rounds = 3 if args.quick else 4
        simulation = overhead(4, rounds)
        runs = {v: deployment_overhead(4, rounds, v) for v in DEPLOYMENT_VARIANTS}
        result["simulation_round_overhead_s"] = simulation["round_overhead_s"]
        result["deployment_round_overhead_s"] = runs["executor"]["round_overhead_s"]
        result["deployment_round_overhead_flower_subprocess_s"] = runs["subprocess"][
            "round_overhead_s"
        ]
        result["deployment_round_overhead_proposed_flower_change_s"] = runs["proposed"][
            "round_overhead_s"
        ]
        result["overhead"] = {
            "simulation_4_nodes": simulation,
            **{f"deployment_4_nodes_{v}": r for v, r in runs.items()},
        }
        result["benchmark_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    # Default settings only (JobSpec.with_defaults): central, federated and DP eps=3 per task.
    result["defaults"] = {
        name: run_defaults_task(task)
        for name, task in default_tasks(args.quick).items()
        if not args.task or name in args.task
    }
    if args.defaults_only:
        result["benchmark_s"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    for name in TASKS:
        result[name] = run_task(name, args.quick)
    rounds = 4 if args.quick else 8
    result["overhead"] = {f"{n}_nodes": overhead(n, rounds) for n in (4, 16)}
    for name in TASKS:
        result[name]["round_overhead_s"] = {
            k: v["round_overhead_s"] for k, v in result["overhead"].items()
        }
    result["benchmark_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    # Re-import under the package name so Ray workers can unpickle the loaders by reference.
    from benchmarks.federation import main as package_main

    raise SystemExit(package_main())
