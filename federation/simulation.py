"""Run a federated job on Flower's simulation engine (Ray), one virtual SuperNode per dataset.

This is the embedded-demo runner and the one end-to-end test of the Flower stack. The
deployment runner (SuperLink + SuperNodes with TLS and node authentication) runs the same
``ServerApp``/``ClientApp``; see docs/federation.md. For tests and quick runs,
:func:`federation.inprocess.run_inprocess` runs the same apps without Ray.

Flower's and Ray's own output (their loggers and the Python warnings they raise) goes to a log
file, never to the terminal, which is left for the sandbox's own lines:
:func:`flower_output_to` for the length of a run (``run_simulation(log_file=...)``, default
:func:`default_flower_log`); the servers send it to ``STATE/logs/flower.log`` for their whole
life (:func:`sandbox.cli_support.send_flower_output`).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

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
    "FLOWER_LOG_ENV",
    "FLOWER_LOGGERS",
    "LOCAL_GRANT",
    "collect_result",
    "default_backend_config",
    "default_flower_log",
    "failed_names",
    "flower_output_to",
    "run_simulation",
]

#: The loggers of Flower and Ray whose records go to the Flower log file.
FLOWER_LOGGERS = ("flwr", "flwr-telemetry", "ray")
#: The environment variable naming the Flower log file (default: :func:`default_flower_log`).
FLOWER_LOG_ENV = "SANDBOX_FLOWER_LOG"
_LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
_redirect_lock = threading.Lock()


def default_flower_log() -> Path:
    """``$SANDBOX_FLOWER_LOG``, else ``$XDG_STATE_HOME/sandbox/logs/flower.log`` (by default
    ``~/.local/state/sandbox/logs/flower.log``)."""
    named = os.environ.get(FLOWER_LOG_ENV)
    if named:
        return Path(named).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(state) / "sandbox" / "logs" / "flower.log"


def _file_handler(log_file: Path) -> logging.FileHandler:
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)  # created private before the handler opens it
    handler = logging.FileHandler(log_file, encoding="utf-8", delay=False)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    return handler


@contextmanager
def flower_output_to(log_file: Path) -> Iterator[Path]:
    """While the block runs, Flower's and Ray's log records and every Python warning go to
    ``log_file`` (appended, created 0600) and not to the terminal; afterwards the loggers are
    as they were."""
    handler = _file_handler(log_file)
    warned = logging.getLogger("py.warnings.flower")

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        handler.handle(
            warned.makeRecord(warned.name, logging.WARNING, filename, lineno, text, (), None)
        )

    with _redirect_lock:
        saved = [
            (lg, lg.handlers[:], lg.propagate) for lg in map(logging.getLogger, FLOWER_LOGGERS)
        ]
        for logger, _, _ in saved:
            logger.handlers = [handler]
            logger.propagate = False
        try:
            with warnings.catch_warnings():
                warnings.showwarning = show
                yield Path(log_file)
        finally:
            for logger, handlers, propagate in saved:
                logger.handlers, logger.propagate = handlers, propagate
            handler.close()


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
    backend_config: dict[str, Any] | None, log_file: Path | None = None
) -> Callable[[ServerApp, ClientApp, int], None]:
    """The engine that runs the apps on Flower's Ray simulation backend; Flower's and Ray's
    output goes to ``log_file`` (default :func:`default_flower_log`)."""

    def run(server_app: ServerApp, client_app: ClientApp, num_nodes: int) -> None:
        with flower_output_to(log_file or default_flower_log()):
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
    log_file: Path | None = None,
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

    Flower's and Ray's output goes to ``log_file`` (default :func:`default_flower_log`), not to
    the terminal.

    Raises :class:`~federation.errors.BudgetExceededError` before any training if a dataset's
    predicted cost exceeds its budget, and :class:`~federation.errors.InvalidJobError` for an
    inconsistent job.
    """
    return run_job(
        spec,
        loaders,
        ray_engine(backend_config, log_file),
        budget=budget,
        rows_per_node=rows_per_node,
        allow_non_private=allow_non_private,
        keep_round_weights=keep_round_weights,
        on_round=on_round,
        node_state=node_state,
        grants=grants,
        plan=plan,
    )
