"""The policy engine: ``decide(request) -> Decision``.

Who may do what for which purpose is decided by Cedar (through :mod:`policies.cedar`) over
the rules in ``policies/rules/*.cedar`` with grants and datasets as entities: deny by
default, and a forbid (a global rule, or one failed check of the grant) beats any permit.
A permit is then checked against the budget ledger. The decision lists every reason: the
permitting grant, or each failed check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from policies.cedar import CedarRequest, CedarRules, Entities, entity_set, load_rules, uid
from policies.datasets import DatasetPolicy
from policies.decision import Decision, Obligations, Reason
from policies.errors import PolicyError
from policies.grants import Action, Grant
from policies.ledger import BudgetLedger
from policies.registry import Registry, UnreadableDataset, UnreadableGrant
from policies.requests import Request


@dataclass(frozen=True)
class _Candidate:
    """A grant with the parts of a decision that depend only on the grant, built once per
    registry revision: its reference in the Cedar context, and its permit reasons."""

    grant: Grant
    grant_uid: dict[str, dict[str, str]]
    permit_message: str
    permit_reasons: dict[tuple[str, ...], tuple[Reason, ...]] = field(default_factory=dict)

    def reasons(self, codes: tuple[str, ...]) -> tuple[Reason, ...]:
        """The reasons of a permit by the rules ``codes`` (built once per set of codes)."""
        reasons = self.permit_reasons.get(codes)
        if reasons is None:
            g = self.grant.grant_id
            reasons = self.permit_reasons[codes] = tuple(
                Reason(code, self.permit_message, g) for code in codes
            )
        return reasons


def _candidate(g: Grant) -> _Candidate:
    return _Candidate(
        g,
        uid("Grant", g.grant_id),
        f"grant {g.grant_id} v{g.version} ({g.purpose}; {g.legal_basis}; "
        f"approved by {g.approved_by}) covers this use",
    )


@dataclass
class _Snapshot:
    """The registry as the engine uses it, rebuilt when the registry's revision moves."""

    revision: int
    grants: dict[str, _Candidate]
    by_firm_dataset: dict[tuple[str, str], tuple[_Candidate, ...]]
    datasets: dict[str, DatasetPolicy]
    entities: Entities
    bad_grants: dict[str, UnreadableGrant] = field(default_factory=dict)
    bad_by_firm: dict[str, tuple[UnreadableGrant, ...]] = field(default_factory=dict)
    bad_datasets: dict[str, UnreadableDataset] = field(default_factory=dict)


class PolicyEngine:
    """Decides requests against the registry's grants, the Cedar rules and the ledger.

    The parsed policy set and entity set are cached and rebuilt only when the registry's
    revision moves (any grant or dataset change, from any process).
    """

    def __init__(
        self,
        registry: Registry,
        ledger: BudgetLedger | None = None,
        rules: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.ledger = ledger
        self.cedar = CedarRules(load_rules() if rules is None else rules)
        self.rules = self.cedar.text
        self.policy_digest = self.cedar.digest
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._reload_lock = threading.Lock()

    def _current(self) -> _Snapshot:
        revision = self.registry.revision()
        snap = self._snapshot
        if snap is not None and snap.revision == revision:
            return snap
        with self._reload_lock:
            snap = self._snapshot
            if snap is not None and snap.revision == revision:
                return snap
            grants, bad = self.registry.grant_records()
            datasets, bad_datasets = self.registry.dataset_records()
            entities, refused = entity_set(grants, datasets)
            bad = bad + [
                UnreadableGrant(g.grant_id, g.version, g.firm, refused[g.grant_id])
                for g in grants
                if g.grant_id in refused
            ]
            bad_ids = {b.grant_id for b in bad}
            grants = [g for g in grants if g.grant_id not in bad_ids]
            candidates = {g.grant_id: _candidate(g) for g in grants}
            index: dict[tuple[str, str], list[_Candidate]] = {}
            for g in grants:
                for name in g.datasets:
                    index.setdefault((g.firm, name), []).append(candidates[g.grant_id])
            bad_by_firm: dict[str, list[UnreadableGrant]] = {}
            for b in bad:
                if b.firm is not None:
                    bad_by_firm.setdefault(b.firm, []).append(b)
            snap = _Snapshot(
                revision,
                candidates,
                {key: tuple(found) for key, found in index.items()},
                {d.dataset_id: d for d in datasets},
                entities,
                {b.grant_id: b for b in bad},
                {firm: tuple(found) for firm, found in bad_by_firm.items()},
                {d.dataset_id: d for d in bad_datasets},
            )
            self._snapshot = snap
            return snap

    def decide(self, request: Request) -> Decision:
        """Permit or deny ``request``, with every reason and, on permit, the obligations."""
        snap = self._current()

        def deny(*reasons: Reason) -> Decision:
            return Decision(False, reasons, None, self.policy_digest)

        ds = request.dataset
        dataset = snap.datasets.get(ds)
        if dataset is None:
            bad_ds = snap.bad_datasets.get(ds)
            if bad_ds is not None:
                return deny(
                    Reason(
                        "dataset-unreadable",
                        f"the policy of dataset {ds!r} (v{bad_ds.version}) cannot be read "
                        f"({bad_ds.problem}); its department must register it again",
                    )
                )
            return deny(Reason("dataset-not-registered", f"dataset {ds!r} is not registered"))
        candidates: tuple[_Candidate, ...]
        unreadable: tuple[Reason, ...] = ()
        if snap.bad_grants:
            if request.grant_id is not None:
                bad_grant = snap.bad_grants.get(request.grant_id)
                unreadable = () if bad_grant is None else (_unreadable(bad_grant),)
            else:
                unreadable = tuple(_unreadable(b) for b in snap.bad_by_firm.get(request.firm, ()))
        if request.grant_id is not None:
            found = snap.grants.get(request.grant_id)
            if found is None:
                if unreadable:
                    return deny(*unreadable)
                return deny(Reason("no-grant", f"there is no grant {request.grant_id!r}"))
            candidates = (found,)
        else:
            candidates = snap.by_firm_dataset.get((request.firm, ds), ())
            if not candidates:
                if unreadable:
                    return deny(*unreadable)
                return deny(
                    Reason("no-grant", f"no grant names firm {request.firm!r} and dataset {ds!r}")
                )
        now = int(self._clock())
        context: dict[str, Any] = {
            "purpose": request.purpose,
            "column_uses": sorted({f"{ds}/{c.name}/{c.use}" for c in request.columns}),
            "epsilon_micro": request.loss.units.epsilon,
            "now": now,
        }
        if request.min_group_size is not None:
            context["min_group_size"] = request.min_group_size
        if request.model is not None:
            context["model"] = request.model
        action = str(request.action)
        batch = [
            CedarRequest(request.firm, action, ds, {**context, "grant": c.grant_uid})
            for c in candidates
        ]
        results = self.cedar.authorize(batch, snap.entities)
        reasons: list[Reason] = []
        for candidate, outcome in zip(candidates, results, strict=True):
            grant = candidate.grant
            if outcome.errors:
                reasons.append(Reason("rule-error", "; ".join(outcome.errors), grant.grant_id))
                continue
            if outcome.allowed:
                permit = self._permit(request, candidate, outcome.codes)
                if permit.permit:
                    return permit
                reasons.extend(permit.reasons)
            elif outcome.codes:
                reasons.extend(
                    _explain(code, request, grant, dataset, now) for code in outcome.codes
                )
            else:
                reasons.append(
                    Reason(
                        "grant-does-not-cover",
                        f"grant {grant.grant_id} does not name firm {request.firm!r} and "
                        f"dataset {ds!r}",
                        grant.grant_id,
                    )
                )
        return deny(*reasons, *unreadable)

    def _permit(self, request: Request, candidate: _Candidate, codes: tuple[str, ...]) -> Decision:
        grant_id = candidate.grant.grant_id
        loss = request.loss
        if self.ledger is not None:
            try:
                short = self.ledger.check(grant_id, request.dataset, loss)
            except PolicyError as exc:  # an unreadable account denies only its own grant
                reason = Reason("budget-unreadable", str(exc), grant_id)
                return Decision(False, (reason,), None, self.policy_digest)
            if short is not None:
                reason = Reason("budget-exhausted", short, grant_id)
                return Decision(False, (reason,), None, self.policy_digest)
        obligations = Obligations(
            grant_id,
            request.firm,
            request.dataset,
            loss,
            request.columns,
            max(request.min_group_size or 1, candidate.grant.min_group_size),
            request.plan_digest,
        )
        return Decision(True, candidate.reasons(codes), obligations, self.policy_digest)


def _unreadable(bad: UnreadableGrant) -> Reason:
    if bad.revoked:
        return Reason(
            "grant-revoked",
            f"grant {bad.grant_id} was revoked by {bad.revoked_by}: {bad.revoked_reason}",
            bad.grant_id,
        )
    return Reason(
        "grant-unreadable",
        f"grant {bad.grant_id} v{bad.version} cannot be used ({bad.problem}); the authority "
        "must revoke it and issue a new grant",
        bad.grant_id,
    )


def _explain(code: str, request: Request, grant: Grant, dataset: DatasetPolicy, now: int) -> Reason:
    g = grant
    if code == "grant-revoked":
        msg = f"grant {g.grant_id} was revoked by {g.revoked_by}: {g.revoked_reason}"
    elif code == "grant-not-yet-valid":
        msg = f"grant {g.grant_id} is valid only from {g.valid_from.isoformat()}"
    elif code == "grant-expired":
        msg = f"grant {g.grant_id} expired at {g.valid_until.isoformat()}"
    elif code == "purpose-not-granted":
        msg = f"purpose {request.purpose!r} is not the granted purpose {g.purpose!r}"
    elif code == "action-not-granted":
        granted = ", ".join(sorted(g.actions))
        msg = f"action {request.action} is not granted (granted: {granted})"
    elif code == "column-use-not-granted":
        terms = g.datasets.get(request.dataset)
        rules = terms.columns if terms else {}
        bad = [
            f"{c.name} as {c.use} (rule: {rules.get(c.name, 'not listed')})"
            for c in request.columns
            if c.name not in rules or c.use not in rules[c.name].uses
        ]
        msg = "column uses not granted: " + "; ".join(bad)
    elif code == "epsilon-over-per-use-cap":
        msg = f"epsilon {request.epsilon} exceeds the per-use cap {g.epsilon_per_use}"
    elif code == "group-size-below-minimum":
        msg = (
            f"minimum group size {request.min_group_size} is below the grant's "
            f"{g.min_group_size}; ask for {g.min_group_size} or more, or leave it out"
        )
    elif code == "model-not-approved":
        approved = ", ".join(sorted(g.models)) or "none"
        msg = f"model {request.model!r} is not approved (approved: {approved})"
    elif code == "identity-column-never-usable":
        bad_cols = sorted({c.name for c in request.columns} & dataset.identity_columns)
        msg = f"identity columns are never usable: {', '.join(bad_cols)}"
    elif code == "core-data-never-leaves":
        msg = f"dataset {dataset.dataset_id} is core (核心) data, which never leaves its department"
    else:
        msg = f"forbidden by rule {code}"
    return Reason(code, msg, g.grant_id)


__all__ = ["Action", "Decision", "Obligations", "PolicyEngine", "Reason", "load_rules"]
