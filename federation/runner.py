"""What every runner does around the apps: check the job, plan it once, approve it on the
nodes when the caller acts for them, run, and collect the result.

A runner (:func:`federation.simulation.run_simulation` on Ray,
:func:`federation.inprocess.run_inprocess` in this process) only supplies the engine: a
function that runs the job's ``ServerApp`` against its ``ClientApp`` until the server returns.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from federation.accounting import JobPlan, PrivacyCost, check_budget, plan_job
from federation.approval import plan_approvals
from federation.client_app import make_client_app
from federation.errors import InvalidJobError
from federation.job import JobSpec
from federation.loader import Loader
from federation.node_store import NodeStore, node_state_dir
from federation.outcome import JobOutcome, Weights, collect_result
from federation.result import TrainingResult
from federation.server_app import make_server_app

#: The grant under which a runner approves a job run without ``node_state``.
LOCAL_GRANT = "local"

#: Runs ``server_app`` against ``client_app`` on ``num_nodes`` nodes until the server returns.
Engine = Callable[[ServerApp, ClientApp, int], None]
Budget = PrivacyCost | Mapping[str, PrivacyCost]


def check_private(spec: JobSpec, budget: Budget | None, allow_non_private: bool) -> None:
    """A non-private job needs the explicit opt-in; a DP job needs a budget."""
    if not spec.dp and not allow_non_private:
        raise InvalidJobError(
            "this job has dp=False: it would release updates without any privacy guarantee. "
            "Only benchmarks may run it, with allow_non_private=True"
        )
    if budget is None and spec.dp:
        raise InvalidJobError("a DP job needs a budget; pass the ledger's remaining budget")


def job_plan(
    spec: JobSpec, rows_per_node: Mapping[str, int] | None, plan: JobPlan | None
) -> JobPlan:
    """The given plan, checked to be this job's, or a new one."""
    if plan is None:
        return plan_job(spec, rows_per_node)
    if plan.config_hash != spec.config_hash():
        raise InvalidJobError(
            "the plan was made for another job; call plan_job(spec, rows_per_node) for this one"
        )
    if rows_per_node is not None and dict(rows_per_node) != dict(plan.rows_per_node or {}):
        raise InvalidJobError(
            "rows_per_node differs from the row counts the plan was made from; pass the plan "
            "alone, or plan the job again with these counts"
        )
    return plan


def loader_table(spec: JobSpec, loaders: Mapping[str, Loader] | Loader) -> dict[str, Loader]:
    """One loader per node of the job (a single loader serves every node)."""
    if not isinstance(loaders, Mapping):
        return dict.fromkeys(spec.nodes, loaders)
    missing = set(spec.nodes) - set(loaders)
    if missing:
        raise InvalidJobError(f"no loader for nodes {sorted(missing)}; give one per dataset")
    return {name: loaders[name] for name in spec.nodes}


@contextlib.contextmanager
def state_root(
    spec: JobSpec, plan: JobPlan, node_state: str | Path | None, allow_non_private: bool
) -> Iterator[tuple[str, dict[str, str]]]:
    """The nodes' state root and the grants the job runs under when the caller acts for every
    department (no ``node_state``): a temporary root where the job is approved under
    :data:`LOCAL_GRANT`. With ``node_state`` it is used as is, and the grants come from the
    caller."""
    if node_state is not None:
        yield str(node_state), {}
        return
    grants = dict.fromkeys(spec.nodes, LOCAL_GRANT)
    person_data = not (allow_non_private and not spec.dp)
    with tempfile.TemporaryDirectory(prefix="fed-nodes-") as tmp:
        approvals = plan_approvals(spec, grants, person_data=person_data, plan=plan)
        for name, approval in approvals.items():
            NodeStore(node_state_dir(tmp, name)).approve(approval)
        yield tmp, grants


def run_job(
    spec: JobSpec,
    loaders: Mapping[str, Loader] | Loader,
    engine: Engine,
    *,
    budget: Budget | None,
    rows_per_node: Mapping[str, int] | None = None,
    allow_non_private: bool = False,
    keep_round_weights: bool = False,
    on_round: Callable[[int, Weights], None] | None = None,
    node_state: str | Path | None = None,
    grants: Mapping[str, str] | None = None,
    plan: JobPlan | None = None,
) -> TrainingResult:
    """Check and plan the job (once), refuse it if over ``budget``, run it with ``engine``.

    See :func:`federation.simulation.run_simulation` for the parameters.
    """
    check_private(spec, budget, allow_non_private)
    plan = job_plan(spec, rows_per_node, plan)
    if spec.dp and budget is not None:
        check_budget(plan.predicted, budget)
    table = loader_table(spec, loaders)
    if node_state is not None and not grants:
        raise InvalidJobError("with node_state, name the grant of every dataset in grants")
    outcome = JobOutcome()
    with state_root(spec, plan, node_state, allow_non_private) as (root, local_grants):
        server_app = make_server_app(
            spec,
            plan,
            None,
            outcome,
            keep_round_weights=keep_round_weights,
            on_round=on_round,
            grants=grants or local_grants,
        )
        engine(server_app, make_client_app(table, root), len(spec.nodes))
    return collect_result(spec, plan, outcome)
