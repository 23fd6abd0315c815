"""The deployed ``ServerApp`` and ``ClientApp``: wrappers around
:mod:`federation.server_app` and :mod:`federation.client_app` for real SuperLink / SuperNode
processes (the FAB in ``sandbox/deployment/fab`` points at these two objects).

Server side (runs in the SuperLink's ``flwr-serverapp`` process). The run config names a job
file (``job-file``: the job's canonical JSON, the public row counts and the grants, written by
:func:`sandbox.deployment.runner.run_deployed`) and an outcome directory (``outcome-dir``).
The app plans the job again from the same inputs (planning is deterministic), runs a
:class:`~federation.server_app.JobServer` over a :class:`FastGrid` and writes the
:class:`~federation.outcome.JobOutcome` as ``outcome.json`` + ``weights.npz``.

Client side (runs in the SuperNode's ``flwr-clientapp`` process). The node config names the
node's dataset (``node-name``), its catalog (``catalog-dir``) and its state root
(``state-root``: approvals, tallies and the node secret live in ``<state-root>/<dataset>``).
Data is read only through the node's own :class:`~sandbox.training.CatalogLoader`; every
message is checked by :func:`federation.node_authorization.authorize` (inside the handlers of
:mod:`federation.client_app`) against the plan approved in the node's own store before any
row is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from federation.outcome import JobOutcome
from federation.result import NodeFailure, RoundMetrics

__all__ = [
    "CATALOG_DIR_KEY",
    "STATE_ROOT_KEY",
    "FastGrid",
    "client_app",
    "read_outcome",
    "server_app",
    "write_outcome",
]

#: Node config keys of a deployed SuperNode (besides ``node-name``).
CATALOG_DIR_KEY = "catalog-dir"
STATE_ROOT_KEY = "state-root"
OUTCOME_FILE = "outcome.json"
WEIGHTS_FILE = "weights.npz"
#: How often the deployed ServerApp asks the SuperLink for replies. Flower's HTTP grid sleeps
#: 3 s between pulls inside ``send_and_receive``; :class:`FastGrid` uses the public
#: ``push_messages`` / ``pull_messages`` instead.
PULL_INTERVAL_S = 0.02


class FastGrid:
    """A :class:`flwr.serverapp.Grid` whose ``send_and_receive`` polls every
    ``pull_interval`` seconds (built on the grid's public ``push_messages`` and
    ``pull_messages``); everything else is the wrapped grid's."""

    def __init__(self, grid: Grid, pull_interval: float = PULL_INTERVAL_S) -> None:
        self._grid = grid
        self.pull_interval = pull_interval

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self._grid.push_messages(messages))
        end = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (end is not None and time.monotonic() >= end):
                break
            time.sleep(self.pull_interval)
        return replies


# --- the outcome file ---------------------------------------------------------------------------


def write_outcome(outcome: JobOutcome, directory: str | Path) -> None:
    """Write ``outcome`` into ``directory`` (weights as ``.npz``, the rest as JSON)."""
    out = Path(directory)
    fields = dataclasses.asdict(outcome)
    weights = fields.pop("weights")
    fields.pop("round_weights")
    if weights is not None:
        tmp = out / (WEIGHTS_FILE + ".part.npz")
        np.savez(tmp, **weights)
        os.replace(tmp, out / WEIGHTS_FILE)
    fields["has_weights"] = weights is not None
    tmp_json = out / (OUTCOME_FILE + ".part")
    tmp_json.write_text(json.dumps(fields), encoding="utf-8")
    os.replace(tmp_json, out / OUTCOME_FILE)  # last: its presence means the run is over


def read_outcome(directory: str | Path) -> JobOutcome | None:
    """The outcome written by the deployed ServerApp, or None if it has not finished."""
    path = Path(directory) / OUTCOME_FILE
    if not path.exists():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    has_weights = bool(fields.pop("has_weights"))
    fields["rounds"] = [
        RoundMetrics(**{**r, "nodes": tuple(r["nodes"]), "failed": tuple(r["failed"])})
        for r in fields["rounds"]
    ]
    fields["failures"] = [NodeFailure(**f) for f in fields["failures"]]
    if has_weights:
        with np.load(Path(directory) / WEIGHTS_FILE) as npz:
            fields["weights"] = {k: npz[k] for k in npz.files}
    return JobOutcome(**fields)


# --- the apps -----------------------------------------------------------------------------------

server_app = ServerApp()


@server_app.main()
def _server_main(grid: Grid, context: Context) -> None:
    from federation.accounting import plan_job
    from federation.job import JobSpec
    from federation.server_app import JobServer

    job = json.loads(Path(str(context.run_config["job-file"])).read_text(encoding="utf-8"))
    spec = JobSpec.parse(job["job"])
    rows = job.get("rows") or None
    outcome = JobOutcome()
    server = JobServer(spec, plan_job(spec, rows), outcome, grants=job["grants"])
    try:
        server.main(FastGrid(grid), context)  # type: ignore[arg-type]
    finally:
        write_outcome(outcome, str(context.run_config["outcome-dir"]))


client_app = ClientApp()


def _loaders(message: Message, context: Context) -> tuple[dict[str, Any], str]:
    """The node's own loader for the message's job, and its state root."""
    from federation.node_authorization import node_name, parse_job
    from sandbox.training import CatalogLoader

    config = message.content["config"]
    spec = parse_job(str(config["job"]))
    name = node_name(context, spec)
    root = str(context.node_config[STATE_ROOT_KEY])
    catalog = str(context.node_config[CATALOG_DIR_KEY])
    loader = CatalogLoader(catalog, tuple(spec.features), spec.label, root, positive=spec.positive)
    return {name: loader}, root


def _iter_handlers() -> Iterator[tuple[str, str]]:
    yield from (("query", "handle_query"), ("train", "handle_train"))
    yield ("evaluate", "handle_evaluate")


def _handle(kind: str, message: Message, context: Context) -> Message:
    import federation.client_app as impl

    handler = getattr(impl, dict(_iter_handlers())[kind])
    loaders, root = _loaders(message, context)
    reply: Message = handler(message, context, loaders, root)
    return reply


@client_app.query()
def _query(message: Message, context: Context) -> Message:
    return _handle("query", message, context)


@client_app.train()
def _train(message: Message, context: Context) -> Message:
    return _handle("train", message, context)


@client_app.evaluate()
def _evaluate(message: Message, context: Context) -> Message:
    return _handle("evaluate", message, context)
