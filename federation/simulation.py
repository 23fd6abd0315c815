"""Run a federated job on Flower's simulation engine (Ray), one virtual SuperNode per dataset.

This is the embedded-demo and test runner. The deployment runner (SuperLink + SuperNodes with
TLS and node authentication) runs the same ``ServerApp``/``ClientApp``; see docs/federation.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
from flwr.simulation import run_simulation as flwr_run_simulation  # noqa: E402

from federation.accounting import (  # noqa: E402
    PrivacyCost,
    check_budget,
    plan_job,
    predict_cost,
    spent_cost,
)
from federation.client_app import make_client_app  # noqa: E402
from federation.client_dp import client_level_cost  # noqa: E402
from federation.errors import BudgetExceededError, InvalidJobError  # noqa: E402
from federation.job import JobSpec  # noqa: E402
from federation.loader import Loader  # noqa: E402
from federation.model_card import ClientLevelCard, build_model_card  # noqa: E402
from federation.node_store import NodeStore, node_state_dir, plan_approvals  # noqa: E402
from federation.result import TrainingResult  # noqa: E402
from federation.server_app import JobOutcome, failed_names, make_server_app  # noqa: E402


def default_backend_config(num_cpus: int | None = None, cpus_per_node: float = 1.0) -> dict:
    """Ray settings for a small machine: one actor per ``cpus_per_node`` CPU, no dashboard,
    quiet logs."""
    total = num_cpus or os.cpu_count() or 1
    return {
        "client_resources": {"num_cpus": cpus_per_node, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": total,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
    }


def run_simulation(
    spec: JobSpec,
    loaders: Mapping[str, Loader] | Loader,
    *,
    budget: PrivacyCost | Mapping[str, PrivacyCost] | None,
    rows_per_node: Mapping[str, int] | None = None,
    allow_non_private: bool = False,
    backend_config: dict[str, Any] | None = None,
    keep_round_weights: bool = False,
    on_round: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    node_state: str | Path | None = None,
    grants: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Predict the job's cost, refuse it if over ``budget``, then train on Ray.

    ``loaders`` maps each of ``spec.nodes`` to its loader (or is one loader for all).
    ``budget`` is per dataset (or one budget for every dataset); ``None`` is accepted only for
    non-private baselines with ``allow_non_private=True``.

    ``node_state`` is the root of the nodes' own state directories (``<root>/<dataset>``),
    where each node finds the plans approved for it, and ``grants`` names the grant of each
    dataset: the governed path, in which the department side has recorded the authority's
    approval beforehand and the nodes refuse anything else. Without ``node_state`` the caller
    acts as every department at once (tests, benchmarks): the job is approved, under the grant
    ``"local"``, in a temporary state directory that lives for this run only.

    Raises :class:`BudgetExceededError` before any training if a dataset's predicted cost
    exceeds its budget, and :class:`InvalidJobError` for an inconsistent job.
    """
    if not spec.dp and not allow_non_private:
        raise InvalidJobError(
            "this job has dp=False: it would release updates without any privacy guarantee. "
            "Only benchmarks may run it, with allow_non_private=True"
        )
    if budget is None and spec.dp:
        raise InvalidJobError("a DP job needs a budget; pass the ledger's remaining budget")
    predicted = predict_cost(spec, rows_per_node)
    if spec.dp:
        check_budget(predicted, budget)  # type: ignore[arg-type]
    plan = plan_job(spec, rows_per_node)
    table = (
        {name: loaders[name] for name in spec.nodes}  # type: ignore[index]
        if isinstance(loaders, Mapping)
        else dict.fromkeys(spec.nodes, loaders)
    )
    missing = set(spec.nodes) - set(table)
    if missing:
        raise InvalidJobError(f"no loader for nodes {sorted(missing)}")

    if node_state is not None and not grants:
        raise InvalidJobError("with node_state, name the grant of every dataset in grants")

    outcome = JobOutcome()
    with _state_root(spec, node_state, rows_per_node, allow_non_private) as (root, used):
        server_app = make_server_app(
            spec,
            plan,
            dict(rows_per_node) if rows_per_node else None,
            outcome,
            keep_round_weights=keep_round_weights,
            on_round=on_round,
            grants=grants or used,
        )
        client_app = make_client_app(table, root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            flwr_run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=len(spec.nodes),
                backend_config=backend_config or default_backend_config(),
            )
    return collect_result(spec, plan, predicted, outcome)


#: The grant under which :func:`run_simulation` approves a job run without ``node_state``.
LOCAL_GRANT = "local"


@contextlib.contextmanager
def _state_root(
    spec: JobSpec,
    node_state: str | Path | None,
    rows_per_node: Mapping[str, int] | None,
    allow_non_private: bool,
) -> Iterator[tuple[str, dict[str, str]]]:
    if node_state is not None:
        yield str(node_state), {}
        return
    grants = dict.fromkeys(spec.nodes, LOCAL_GRANT)
    with tempfile.TemporaryDirectory(prefix="fed-nodes-") as tmp:
        approvals = plan_approvals(
            spec, grants, rows_per_node, person_data=not (allow_non_private and not spec.dp)
        )
        for name, approval in approvals.items():
            NodeStore(node_state_dir(tmp, name)).approve(approval)
        yield tmp, grants


def collect_result(
    spec: JobSpec,
    plan: Any,
    predicted: dict[str, PrivacyCost],
    outcome: JobOutcome,
) -> TrainingResult:
    """Turn what the ServerApp recorded into a :class:`TrainingResult` with spend and card."""
    known = set(outcome.dp_rows)
    spent = spent_cost(
        spec,
        plan,
        outcome.steps,
        counted={n: n in known for n in spec.nodes},
        evaluated=outcome.evaluated,
    )
    for name in spec.nodes:
        if name not in known:
            # The server never identified this node: charge what was reserved.
            spent[name] = predicted[name]
        if spent[name].epsilon > predicted[name].epsilon + 1e-9:
            raise BudgetExceededError(
                f"spent epsilon on {name!r} exceeds the reservation; refuse to release"
            )
    completed = outcome.finished and outcome.abort_reason is None and outcome.weights is not None
    client_predicted = client_level_cost(spec)
    client_spent = client_level_cost(spec, outcome.client_rounds)
    client_card = None
    if client_spent is not None:
        client_card = ClientLevelCard(
            epsilon_spent=client_spent.epsilon,
            delta=spec.client_delta,
            noise_multiplier=float(client_spent.components["noise_multiplier"]),
            clipping_norm=spec.client_clipping_norm,
            client_sample_rate=spec.client_sample_rate,
            rounds_released=outcome.client_rounds,
        )
    card = None
    if completed:
        card = build_model_card(
            spec,
            config_hash=spec.config_hash(),
            dp_rows=outcome.dp_rows,
            spent={n: (c.epsilon, c.delta) for n, c in spent.items()},
            rounds_participated=outcome.rounds_participated,
            dp_correct=outcome.dp_correct,
            dp_total=outcome.dp_total,
            failures=tuple(f"{f.node} at {f.stage}: {f.reason}" for f in outcome.failures),
            client_level=client_card,
        )
    reason = outcome.abort_reason
    if not outcome.finished:
        reason = "the simulation ended before the ServerApp finished"
    return TrainingResult(
        status="completed" if completed else "aborted",
        weights=outcome.weights if completed else None,
        rounds=outcome.rounds,
        predicted=predicted,
        spent=spent,
        failures=outcome.failures,
        model_card=card,
        abort_reason=reason,
        round_weights=outcome.round_weights,
        client_level_predicted=client_predicted,
        client_level_spent=client_spent,
    )


__all__ = ["collect_result", "default_backend_config", "failed_names", "run_simulation"]
