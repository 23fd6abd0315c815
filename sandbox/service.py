"""The governed DP query path: policy decision, budget reservation, release, log.

    firm -> QueryService.query(firm, purpose, sql, epsilon)
         -> parse + validate (refusals cost nothing)
         -> policy engine decides (deny by default; every reason logged)
         -> calibrate: the exact (epsilon, delta) of the release, from OpenDP
         -> ledger reserves it (durable, before any mechanism runs)
         -> OpenDP releases once -> the ledger commits with the result's SHA-256 -> log
         -> firm gets values, intervals, the loss spent, and the log index with its
            inclusion proof against a signed tree head

If anything fails after the reservation and before the release, the reservation is refunded;
if the process dies there, it stays charged (the ledger's rule), so no release is ever
uncharged. The decision is single-use and the authority reserves what it stored for it. If
the grant is revoked while the mechanism runs, the commit is refused: the budget stays
charged, a ``withheld`` entry is logged and :class:`policies.GrantRevokedError` is raised
instead of returning the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policies.authority import Authority
from policies.datasets import DataLevel, DatasetPolicy
from policies.engine import Decision
from policies.grants import Action, ColumnUse
from policies.requests import ColumnRef, Request
from sandbox.catalog import Catalog, Classification, Manifest
from sandbox.engine import QueryEngine, check_dataset_delta, check_privacy_parameters
from sandbox.errors import SandboxError
from sandbox.release import QueryResult

#: How a manifest's classification maps to the Data Security Law levels the policy engine uses.
LEVELS = {
    Classification.PUBLIC: DataLevel.GENERAL,
    Classification.INTERNAL: DataLevel.GENERAL,
    Classification.SENSITIVE: DataLevel.IMPORTANT,
    Classification.CORE: DataLevel.CORE,
}


#: The pseudo-column a grant lists (``"*": aggregate_only``) to allow COUNT(*).
ROW_COUNT = "*"


class Denied(SandboxError):
    """The policy engine denied the request; ``decision`` holds every reason."""

    def __init__(self, decision: Decision):
        self.decision = decision
        reasons = "; ".join(f"{r.code}: {r.message}" for r in decision.reasons)
        super().__init__(f"denied: {reasons}")


@dataclass
class GovernedResult:
    """A released result with its place in the transparency log."""

    result: QueryResult
    grant_id: str
    release_index: int
    tree_size: int
    inclusion_proof: list[str]
    tree_head: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.result.to_json(),
            "grant_id": self.grant_id,
            "log": {
                "release_index": self.release_index,
                "tree_size": self.tree_size,
                "inclusion_proof": self.inclusion_proof,
                "tree_head": self.tree_head,
            },
        }


def dataset_policy(manifest: Manifest, epsilon_cap: float, delta_cap: float) -> DatasetPolicy:
    """The policy-engine view of a manifest: level, never-usable identity columns, cap."""
    return DatasetPolicy(
        dataset_id=manifest.name,
        department=manifest.department or "unknown",
        level=LEVELS[manifest.classification],
        identity_columns=frozenset(c.name for c in manifest.columns if c.role == "identifier"),
        epsilon_cap=epsilon_cap,
        delta_cap=delta_cap,
    )


def granted_group_size(authority: Authority, firm: str, dataset: str) -> int:
    """The minimum group size the firm's grants on ``dataset`` ask for (1 if none)."""
    sizes = [
        g.min_group_size
        for g in authority.registry.grants()
        if g.firm == firm and dataset in g.datasets
    ]
    return max(sizes, default=1)


class QueryService:
    """A department node's query endpoint under the policy authority."""

    def __init__(self, catalog: Catalog, authority: Authority, engine: QueryEngine | None = None):
        self.catalog = catalog
        self.authority = authority
        self.engine = engine or QueryEngine(catalog)

    def query(
        self,
        firm: str,
        purpose: str,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        grant_id: str | None = None,
        min_group_size: int | None = None,
    ) -> GovernedResult:
        """Run one governed query. ``min_group_size`` defaults to the firm's grant terms.

        Raises only the project's errors: ``SandboxError`` subclasses (bad SQL, parameters,
        ``Denied``) and ``PolicyError`` subclasses (budget, revocation, state).
        """
        epsilon, delta = check_privacy_parameters(epsilon, delta)  # the ledger's floor too
        plan = self.engine.plan(sql)  # bad SQL: refused before any decision or charge
        delta = check_dataset_delta(self.catalog[plan.dataset], delta)
        uses = plan.column_uses()
        if any(a.kind == "count" and a.column is None for a in plan.aggregates):
            uses[ROW_COUNT] = {"aggregate"}  # counting rows is a use a grant must allow
        columns = tuple(
            ColumnRef(name=name, use=ColumnUse(use))
            for name, col_uses in sorted(uses.items())
            for use in sorted(col_uses)
        )
        request = Request.parse(
            {
                "firm": firm,
                "dataset": plan.dataset,
                "purpose": purpose,
                "action": Action.QUERY,
                "columns": columns,
                "epsilon": epsilon,
                "delta": delta,
                "min_group_size": min_group_size
                or granted_group_size(self.authority, firm, plan.dataset),
                "grant_id": grant_id,
            }
        )
        decision = self.authority.decide(request)
        if not decision.permit or decision.obligations is None:
            raise Denied(decision)
        obligations = decision.obligations
        prepared = self.engine.prepare(
            plan, epsilon, delta, min_group_size=obligations.min_group_size
        )
        reservation = self.authority.reserve(decision)
        try:
            result = prepared.release()
        except BaseException:
            self.authority.refund(reservation)
            raise
        released = json.dumps(result.to_json(), sort_keys=True, ensure_ascii=False).encode()
        # Raises GrantRevokedError (budget kept, logged) if the grant was revoked meanwhile:
        # the result is then never returned.
        index = self.authority.commit(reservation, released)
        head = self.authority.tree_head()
        proof = self.authority.inclusion_proof(index, head.size)
        return GovernedResult(
            result=result,
            grant_id=obligations.grant_id,
            release_index=index,
            tree_size=head.size,
            inclusion_proof=[p.hex() for p in proof],
            tree_head=head.to_json(),
        )
