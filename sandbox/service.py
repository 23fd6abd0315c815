"""The governed DP query path: policy decision, then the authority's governed use.

    firm -> QueryService.query(firm, purpose, sql, epsilon)
         -> parse + validate (refusals cost nothing)
         -> policy engine decides (deny by default; every reason logged); the permit's
            obligations carry the grant's minimum group size
         -> calibrate: the exact (epsilon, delta) of the release, from OpenDP
         -> Authority.use: the ledger reserves that calibrated loss (durable, before any
            mechanism runs), OpenDP releases once, the ledger commits with the result's
            SHA-256 and the log records it
         -> firm gets values, intervals, the loss spent, and the log index with its
            inclusion proof against a signed tree head

The steps after the decision are :meth:`policies.Authority.use`, the same path training jobs
take: if the mechanism fails before releasing, the reservation is refunded; if the process
dies there, it stays charged, so no release is ever uncharged. If the grant is revoked while
the mechanism runs, the commit is refused: the budget stays charged, a ``withheld`` entry is
logged and :class:`policies.GrantRevokedError` is raised instead of returning the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policies.authority import Authority
from policies.datasets import DataLevel, DatasetPolicy
from policies.grants import Action, ColumnUse
from policies.ledger import Reservation
from policies.loss import PrivacyLoss
from policies.requests import ColumnRef, Request
from policies.use import Outcome
from sandbox.catalog import Catalog, Classification, Manifest
from sandbox.errors import Denied as Denied  # re-exported: raised here
from sandbox.query import QueryEngine, QueryResult, check_dataset_delta, check_privacy_parameters

#: How a manifest's classification maps to the Data Security Law levels the policy engine uses.
LEVELS = {
    Classification.PUBLIC: DataLevel.GENERAL,
    Classification.INTERNAL: DataLevel.GENERAL,
    Classification.SENSITIVE: DataLevel.IMPORTANT,
    Classification.CORE: DataLevel.CORE,
}


#: The pseudo-column a grant lists (``"*": aggregate_only``) to allow COUNT(*).
ROW_COUNT = "*"


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


class QueryService:
    """A department node's query endpoint under the policy authority."""

    def __init__(
        self, catalog: Catalog, authority: Authority, engine: QueryEngine | None = None
    ) -> None:
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
        """Run one governed query. Groups smaller than the grant's minimum group size are
        suppressed; ``min_group_size`` may ask for a larger minimum, never a smaller one.

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
                "min_group_size": min_group_size or None,
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
        mechanism_ran: list[bool] = []

        def release(reservations: tuple[Reservation, ...]) -> Outcome[QueryResult]:
            result = prepared.release()
            mechanism_ran.append(True)
            released = json.dumps(result.to_json(), sort_keys=True, ensure_ascii=False)
            return Outcome(result, released.encode())

        def on_failure(reservation: Reservation, reason: str) -> bytes | None:
            if not mechanism_ran:
                return None  # nothing was released: refund
            return json.dumps({"status": "failed", "reason": reason}).encode()  # charge it

        # Reserves exactly what OpenDP calibrated (never more than decided), releases once,
        # commits; raises GrantRevokedError (budget kept, logged) if the grant was revoked.
        settled = self.authority.use(
            [decision],
            release,
            spend=[PrivacyLoss.spent(prepared.epsilon, prepared.delta)],
            on_failure=on_failure,
        )
        result = settled.value
        index = settled.release_indexes[obligations.dataset]
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
