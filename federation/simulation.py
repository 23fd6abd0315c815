"""Run a federated job on Flower's simulation engine (Ray), one virtual SuperNode per dataset.

This is the embedded-demo runner and the one end-to-end test of the Flower stack. The
deployment runner (SuperLink + SuperNodes with TLS and node authentication) runs the same
``ServerApp``/``ClientApp``; see docs/federation.md. For tests and quick runs,
:func:`federation.inprocess.run_inprocess` runs the same apps without Ray.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.simulation import run_simulation as flwr_run_simulation

from federation.accounting import JobPlan, PrivacyCost
from federation.job import JobSpec
from federation.loader import Loader
from federation.outcome import Weights, collect_result
from federation.result import TrainingResult
from federation.runner import LOCAL_GRANT, run_job
from federation.server_app import failed_names

__all__ = [
    "LOCAL_GRANT",
    "collect_result",
    "default_backend_config",
    "failed_names",
    "run_simulation",
]


def default_backend_config(
    num_cpus: int | None = None, cpus_per_node: float = 1.0
) -> dict[str, Any]:
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


def ray_engine(
    backend_config: dict[str, Any] | None,
) -> Callable[[ServerApp, ClientApp, int], None]:
    """The engine that runs the apps on Flower's Ray simulation backend."""

    def run(server_app: ServerApp, client_app: ClientApp, num_nodes: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            flwr_run_simulation(
                server_app=server_app,
                client_app=client_app,
                num_supernodes=num_nodes,
                backend_config=backend_config or default_backend_config(),
            )

    return run


def run_simulation(
    spec: JobSpec,
    loaders: Mapping[str, Loader] | Loader,
    *,
    budget: PrivacyCost | Mapping[str, PrivacyCost] | None,
    rows_per_node: Mapping[str, int] | None = None,
    allow_non_private: bool = False,
    backend_config: dict[str, Any] | None = None,
    keep_round_weights: bool = False,
    on_round: Callable[[int, Weights], None] | None = None,
    node_state: str | Path | None = None,
    grants: Mapping[str, str] | None = None,
    plan: JobPlan | None = None,
) -> TrainingResult:
    """Plan the job (or take ``plan``), refuse it if over ``budget``, then train on Ray.

    ``loaders`` maps each of ``spec.nodes`` to its loader (or is one loader for all).
    ``budget`` is per dataset (or one budget for every dataset); ``None`` is accepted only for
    non-private baselines with ``allow_non_private=True``. ``plan`` is the job's
    :class:`~federation.accounting.JobPlan` when the caller already made it (the governed path
    plans once, for the decision, the reservation, the approvals and this run); it must be this
    job's.

    ``node_state`` is the root of the nodes' own state directories (``<root>/<dataset>``),
    where each node finds the plans approved for it, and ``grants`` names the grant of each
    dataset: the governed path, in which the department side has recorded the authority's
    approval beforehand and the nodes refuse anything else. Without ``node_state`` the caller
    acts as every department at once (tests, benchmarks): the job is approved, under the grant
    ``"local"``, in a temporary state directory that lives for this run only.

    Raises :class:`~federation.errors.BudgetExceededError` before any training if a dataset's
    predicted cost exceeds its budget, and :class:`~federation.errors.InvalidJobError` for an
    inconsistent job.
    """
    return run_job(
        spec,
        loaders,
        ray_engine(backend_config),
        budget=budget,
        rows_per_node=rows_per_node,
        allow_non_private=allow_non_private,
        keep_round_weights=keep_round_weights,
        on_round=on_round,
        node_state=node_state,
        grants=grants,
        plan=plan,
    )
