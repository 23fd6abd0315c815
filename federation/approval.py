"""What a node is told once the authority has decided a job: the approved plan and its limits.

An :class:`Approval` is one dataset's share of a :class:`~federation.accounting.JobPlan`
under one grant. The department records it in its node's
:class:`~federation.node_store.NodeStore`; from then on the node runs that plan, and nothing
else, for the grant.

>>> from federation.job import JobSpec
>>> spec = JobSpec(model="logreg", features=("x",), label="y", nodes=("tax",),
...                sample_rate=0.1, noise_multiplier=1.2, rounds=2)
>>> approval = plan_approvals(spec, {"tax": "G1"})["tax"]
>>> approval.max_steps, approval.noise_multiplier
(20, 1.2)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from federation.accounting import JobPlan, plan_job
from federation.errors import InvalidJobError, NodeApprovalError
from federation.job import JobSpec

_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Approval:
    """What the authority decided for one dataset under one grant: the plan and its limits.

    ``plan_digest`` is the job's configuration hash, as decided and logged; ``max_steps`` the
    DP-SGD steps its reservation covers; ``sample_rate`` and ``noise_multiplier`` the DP-SGD
    parameters that reservation was computed with. ``person_data=False`` is only for synthetic
    benchmark data: it is the one case in which a non-private (``dp=False``) job may run.
    Approving the same plan again (a second reservation) adds ``max_steps`` and one more use.
    """

    grant_id: str
    dataset: str
    plan_digest: str
    max_steps: int
    sample_rate: float
    noise_multiplier: float
    person_data: bool = True

    def __post_init__(self) -> None:
        if not self.grant_id or not self.dataset:
            raise NodeApprovalError("an approval names a grant and a dataset; give both")
        if not _DIGEST.fullmatch(self.plan_digest):
            raise NodeApprovalError(
                "plan_digest must be a SHA-256 hex digest (64 characters): the job's config_hash()"
            )
        if self.max_steps < 0:
            raise NodeApprovalError("max_steps must not be negative; take it from the job plan")
        if not (0 < self.sample_rate <= 1) or not math.isfinite(self.noise_multiplier):
            raise NodeApprovalError(
                "an approval needs a sample rate in (0, 1] and finite noise; take them from "
                "the job plan"
            )
        if self.noise_multiplier < 0:
            raise NodeApprovalError("noise_multiplier must not be negative; take it from the plan")


def plan_approvals(
    spec: JobSpec,
    grants: Mapping[str, str],
    rows_per_node: Mapping[str, int] | None = None,
    *,
    person_data: bool = True,
    plan: JobPlan | None = None,
) -> dict[str, Approval]:
    """The approval of ``spec`` for each of its datasets, under the grant named for it: what a
    node is told once the authority has decided (and the ledger reserved) the job.

    Pass the job's ``plan`` (from :func:`~federation.accounting.plan_job`) to reuse it; without
    one the job is planned here.
    """
    missing = [n for n in spec.nodes if not grants.get(n)]
    if missing:
        raise NodeApprovalError(f"no grant named for datasets {missing}; name one for each")
    digest = spec.config_hash()
    if plan is None:
        plan = plan_job(spec, rows_per_node)
    elif plan.config_hash and plan.config_hash != digest:
        raise InvalidJobError(
            "the plan was made for another job; call plan_job(spec, rows_per_node) for this one"
        )
    return {
        name: Approval(
            grant_id=grants[name],
            dataset=name,
            plan_digest=digest,
            max_steps=plan.total_steps(name),
            sample_rate=p.sample_rate,
            noise_multiplier=p.noise_multiplier,
            person_data=person_data,
        )
        for name, p in plan.nodes.items()
    }
