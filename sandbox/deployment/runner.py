"""Run a job over a :class:`~sandbox.deployment.processes.Federation`: plan it, start the
FAB with ``flwr run``, wait for the deployed ServerApp's outcome, collect the result.

The caller acts for the hub: it passes each dataset's signed ``train`` instruction, which
the node must already have accepted (``NodeService.Execute``); every message carries them and
each node's ClientApp checks its own (:mod:`sandbox.deployment.apps`). The result's spend and
model card come from :func:`federation.outcome.collect_result`, as for the simulation. A node
that failed during a round is charged that round's planned steps on top of what it reported
(it may have trained before failing; its own store has the exact tally); the log names each
such node and the steps charged.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping

from federation.job import JobSpec
from federation.outcome import collect_result
from federation.result import NodeFailure, RoundMetrics, TrainingResult
from federation.runner import job_plan
from policies.instructions import SignedMessage
from sandbox.deployment.apps import ProgressReader, read_outcome
from sandbox.deployment.processes import DeploymentError, Federation

__all__ = ["run_deployed"]

log = logging.getLogger(__name__)


def run_deployed(
    federation: Federation,
    spec: JobSpec,
    grants: Mapping[str, str],
    instructions: Mapping[str, SignedMessage],
    *,
    timeout_s: float | None = None,
    on_round: Callable[[RoundMetrics, list[NodeFailure]], None] | None = None,
) -> TrainingResult:
    """Run ``spec`` on the federation's SuperNodes under ``grants`` (dataset -> grant id) and
    the signed ``instructions`` (dataset -> the signed train instruction its node accepted).
    ``on_round`` is told of each round as the ServerApp finishes it, with the node failures
    seen since the round before (failures after the last round are in the result only)."""
    plan = job_plan(spec, None, None)
    runs = federation.workdir / "runs"
    with tempfile.TemporaryDirectory(prefix="run-", dir=runs) as tmp:
        job_file = f"{tmp}/job.json"
        with open(job_file, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "job": spec.canonical_json(),
                    "rows": {},  # nodes refuse public row counts: the plan is the signed one
                    "grants": dict(grants),
                    "instructions": {
                        d: json.dumps(one.to_json(), sort_keys=True)
                        for d, one in instructions.items()
                    },
                },
                f,
            )
        federation.run({"job-file": job_file, "outcome-dir": tmp})
        limit = timeout_s or spec.round_timeout_s * (spec.rounds + 3) + 120
        deadline = time.monotonic() + limit
        progress = ProgressReader(tmp)

        def report() -> None:
            for metrics, failures in progress.new():
                if on_round is not None:
                    on_round(metrics, failures)

        while (outcome := read_outcome(tmp)) is None:
            report()
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"the deployed job gave no outcome within {limit:.0f} s; see the logs in "
                    f"{federation.workdir / 'logs'}"
                )
            time.sleep(0.05)
        report()
    result = collect_result(spec, plan, outcome)
    for failure in outcome.failures:
        log.warning("node %s failed at %s: %s", failure.node, failure.stage, failure.reason[:300])
    failed_rounds = {n for r in outcome.rounds for n in r.failed}
    for dataset in spec.nodes:
        steps = outcome.steps.get(dataset, 0)
        how = (
            "its reported steps plus the planned steps of each round it failed"
            if dataset in failed_rounds
            else "the steps it reported"
        )
        log.info("dataset %s charged %d DP-SGD steps (%s)", dataset, steps, how)
    return result
