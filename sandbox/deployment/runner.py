"""Run a job over a :class:`~sandbox.deployment.processes.Federation`: plan it, start the
FAB with ``flwr run``, wait for the deployed ServerApp's outcome, collect the result.

The caller acts for the hub: the nodes' approvals must already be in their own stores (the
governed path records them when a node accepts the signed plan). The result's spend and model
card come from :func:`federation.outcome.collect_result`, as for the simulation.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping

from federation.job import JobSpec
from federation.outcome import collect_result
from federation.result import TrainingResult
from federation.runner import job_plan
from sandbox.deployment.apps import read_outcome
from sandbox.deployment.processes import DeploymentError, Federation

__all__ = ["run_deployed"]


def run_deployed(
    federation: Federation,
    spec: JobSpec,
    grants: Mapping[str, str],
    *,
    rows_per_node: Mapping[str, int] | None = None,
    timeout_s: float | None = None,
) -> TrainingResult:
    """Run ``spec`` on the federation's SuperNodes under ``grants`` (dataset -> grant id)."""
    plan = job_plan(spec, rows_per_node, None)
    runs = federation.workdir / "runs"
    with tempfile.TemporaryDirectory(prefix="run-", dir=runs) as tmp:
        job_file = f"{tmp}/job.json"
        with open(job_file, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "job": spec.canonical_json(),
                    "rows": dict(rows_per_node or {}),
                    "grants": dict(grants),
                },
                f,
            )
        federation.run({"job-file": job_file, "outcome-dir": tmp})
        limit = timeout_s or spec.round_timeout_s * (spec.rounds + 3) + 120
        deadline = time.monotonic() + limit
        while (outcome := read_outcome(tmp)) is None:
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"the deployed job gave no outcome within {limit:.0f} s; see the logs in "
                    f"{federation.workdir / 'logs'}"
                )
            time.sleep(0.05)
    return collect_result(spec, plan, outcome)
