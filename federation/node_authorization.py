"""How a department node decides whether to answer a message from the ``ServerApp``.

The node does not trust the server. Before it answers anything it checks the job against its
own :class:`~federation.node_store.NodeStore`: the job's configuration hash must be the plan
digest approved for the grant and this dataset, and a non-private job (``dp=False``) is refused
on person data. The node does not plan the job again: its approval *is* its share of the one
:class:`~federation.accounting.JobPlan` (sampling rate, noise multiplier, steps), recorded when
the authority decided. The node checks that the message's job agrees with it (the sampling rate
the job implies, the steps it asks for, the noise it names or the epsilon target the approved
noise must meet) and then trains with the approved parameters only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from flwr.app import ConfigRecord, Context, Message

from federation.accounting import (
    NodePlan,
    dpsgd_epsilon,
    sample_rate_for,
    sgd_target_epsilon,
    steps_per_round,
)
from federation.approval import Approval
from federation.errors import InvalidJobError, NodeApprovalError, NodeStateError
from federation.job import JobSpec
from federation.node_store import NodeStore, node_state_dir

NODE_NAME_KEY = "node-name"
#: Node config key (deployment) naming the node's state directory; in simulation the
#: directory is ``<node_state root>/<dataset>``.
STATE_DIR_KEY = "state-dir"


@dataclass(frozen=True)
class AuthorizedJob:
    """A message's job, checked against this node's approval: what the node may run."""

    spec: JobSpec
    plan: NodePlan
    name: str
    store: NodeStore
    approval: Approval


@lru_cache(maxsize=16)
def parse_job(job_json: str) -> JobSpec:
    """The job a message carries (parsed once per process)."""
    return JobSpec.parse(job_json)


def parse_rows(rows_json: str) -> dict[str, int] | None:
    """The public row counts a message carries, or None."""
    try:
        rows = json.loads(rows_json) or None
    except (ValueError, RecursionError):
        raise InvalidJobError("the message's row counts are not JSON; resend the job") from None
    if rows is not None and not (
        isinstance(rows, dict) and all(isinstance(v, int) for v in rows.values())
    ):
        raise InvalidJobError("the message's row counts must map datasets to integers")
    return rows


def node_name(context: Context, spec: JobSpec) -> str:
    """This node's dataset id: ``node-name`` from the node config (deployment), or the
    simulation partition id mapped onto ``spec.nodes``."""
    if NODE_NAME_KEY in context.node_config:
        return str(context.node_config[NODE_NAME_KEY])
    try:
        return spec.nodes[int(context.node_config["partition-id"])]
    except (KeyError, IndexError, ValueError, TypeError):
        raise NodeStateError(
            f"the node config names neither {NODE_NAME_KEY!r} nor a partition of the job; set "
            f"{NODE_NAME_KEY!r} to the node's dataset id"
        ) from None


def node_store(context: Context, node_state: str | None, name: str) -> NodeStore:
    """The node's own store: ``state-dir`` from its config, or ``<node_state>/<name>``."""
    if STATE_DIR_KEY in context.node_config:
        return NodeStore(str(context.node_config[STATE_DIR_KEY]))
    if node_state is None:
        raise NodeApprovalError(
            f"node {name!r} has no state directory holding its approvals; it runs nothing. "
            f"Set {STATE_DIR_KEY!r} in its node config"
        )
    return NodeStore(node_state_dir(node_state, name))


def grant_of(config: ConfigRecord, name: str) -> str:
    """The grant the message names for dataset ``name``."""
    try:
        grants = json.loads(str(config.get("grants", "{}")))
    except (ValueError, RecursionError):
        grants = None
    grant = grants.get(name) if isinstance(grants, dict) else None
    if not isinstance(grant, str) or not grant:
        raise NodeApprovalError(
            f"the job sent to node {name!r} names no grant for it; the node runs only plans "
            "approved under a grant"
        )
    return grant


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def approved_plan(
    spec: JobSpec, name: str, rows: Mapping[str, int] | None, a: Approval
) -> NodePlan:
    """The node's plan, from its approval, once the message's job is shown to agree with it.

    Raises :class:`NodeApprovalError` if the job implies another sampling rate, more steps, or
    a noise that is not the approved one (or that would not meet the job's epsilon target).
    """
    q = sample_rate_for(spec, name, rows)
    steps = steps_per_round(spec.local_epochs, a.sample_rate)
    noise_ok = (not spec.dp and a.noise_multiplier == 0.0) or (
        spec.noise_multiplier is not None and _same(spec.noise_multiplier, a.noise_multiplier)
    )
    if spec.dp and spec.noise_multiplier is None:
        total = steps * spec.rounds
        eps = dpsgd_epsilon(a.noise_multiplier, q, total, spec.target_delta, spec.accountant)
        noise_ok = eps <= sgd_target_epsilon(spec)
    if not (_same(q, a.sample_rate) and noise_ok and steps * spec.rounds <= a.max_steps):
        raise NodeApprovalError(
            f"node {name!r} refuses the job: its sampling rate, noise or steps differ from the "
            "plan approved under the grant. Submit the approved job, or ask for a new decision"
        )
    return NodePlan(a.sample_rate, steps, a.noise_multiplier)


def authorize(message: Message, context: Context, node_state: str | None) -> AuthorizedJob:
    """Check a message's job against the node's own approvals; raise
    :class:`NodeApprovalError` unless it is exactly an approved plan."""
    try:
        config: ConfigRecord = message.content["config"]  # type: ignore[assignment]
        job_json, rows_json = str(config["job"]), str(config.get("rows", "{}"))
    except (KeyError, ValueError, TypeError):
        raise InvalidJobError("the message carries no job configuration; resend it") from None
    spec = parse_job(job_json)
    name = node_name(context, spec)
    store = node_store(context, node_state, name)
    approval = store.approval(grant_of(config, name), name, spec.config_hash())
    if not spec.dp and approval.person_data:
        raise NodeApprovalError(
            f"node {name!r} refuses a non-private job (dp=False): its rows are person data"
        )
    plan = approved_plan(spec, name, parse_rows(rows_json), approval)
    return AuthorizedJob(spec, plan, name, store, approval)


__all__ = [
    "NODE_NAME_KEY",
    "STATE_DIR_KEY",
    "AuthorizedJob",
    "approved_plan",
    "authorize",
    "grant_of",
    "node_name",
    "node_store",
    "parse_job",
    "parse_rows",
]
