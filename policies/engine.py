"""The policy engine: ``decide(request) -> Decision``.

Who may do what for which purpose is decided by Cedar (``cedarpy``) over the rules in
``policies/rules/*.cedar`` with grants and datasets as entities: deny by default, and a
forbid (a global rule, or one failed check of the grant) beats any permit. Cedar has no
floats, so epsilon travels as integer micro-epsilon. A permit is then checked against the
budget ledger. The decision lists every reason: the permitting grant, or each failed check.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import cedarpy

from policies.composition import Loss
from policies.datasets import DatasetPolicy
from policies.errors import PolicyError
from policies.grants import Action, ColumnUse, Grant
from policies.ledger import BudgetLedger
from policies.registry import Registry, UnreadableDataset, UnreadableGrant
from policies.requests import ColumnRef, Request

RULE_FILES = ("global.cedar", "grants.cedar")


def load_rules() -> str:
    """The Cedar policy text the engine enforces (global rules first)."""
    folder = resources.files("policies") / "rules"
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in RULE_FILES)


@dataclass(frozen=True)
class Reason:
    """Why a decision went the way it did: a Cedar rule id or a ledger/registry check."""

    code: str
    message: str
    grant_id: str | None = None


@dataclass(frozen=True)
class Obligations:
    """What a permit obliges the caller to do: reserve ``loss``, touch only ``columns``,
    suppress released groups smaller than ``min_group_size``."""

    grant_id: str
    firm: str
    dataset: str
    loss: Loss
    columns: tuple[ColumnRef, ...]
    min_group_size: int
    plan_digest: str | None = None  # a training job's approved plan (SHA-256 of its spec)


@dataclass(frozen=True)
class Decision:
    """A decision. Only one issued by :meth:`policies.Authority.decide` (it has a
    ``decision_id`` recorded by the authority) can be reserved, and only once; the
    reservation uses the obligations the authority stored, not the fields of this object."""

    permit: bool
    reasons: tuple[Reason, ...]
    obligations: Obligations | None
    policy_digest: str
    request_digest: str | None = None  # set by the authority when it logs the request
    log_index: int | None = None
    decision_id: str | None = None  # set by the authority when it issues a permit

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": "permit" if self.permit else "deny",
            "reasons": [
                {"code": r.code, "message": r.message, "grant_id": r.grant_id} for r in self.reasons
            ],
            "grant_id": self.obligations.grant_id if self.obligations else None,
            "request_digest": self.request_digest,
            "policy_digest": self.policy_digest,
            "plan_digest": self.obligations.plan_digest if self.obligations else None,
        }


# A JSON string literal, escaped exactly as json.dumps escapes it (its C implementation).
_encode_str = json.encoder.encode_basestring_ascii


_ACTION_UIDS = {a: {"type": "Action", "id": a.value} for a in Action}

try:  # the Rust call under cedarpy.is_authorized_batch, minus the wrapper's result objects
    from cedarpy._internal import is_authorized_batch as _native_batch
except ImportError:  # pragma: no cover - a cedarpy without it: use the public wrapper
    _native_batch = None
_decode_json = json.JSONDecoder().raw_decode


def _response(text: str) -> dict[str, Any]:
    """Decode one Cedar response, skipping its trailing timing ``metrics`` when it can.

    Cedar writes ``metrics`` last; the object before it decodes to exactly the same keys and
    values as the full text. If that prefix is not a whole object with the decision and its
    diagnostics, the full text is decoded instead.
    """
    cut = text.rfind(',"metrics":')
    if cut > 0:
        try:
            head = _decode_json(text[:cut] + "}")[0]
        except ValueError:
            head = None
        if isinstance(head, dict) and "decision" in head and "diagnostics" in head:
            return head
    return _decode_json(text)[0]


def _authorize(
    batch: list[dict[str, Any]], policies: cedarpy.PolicySet, entities: cedarpy.Entities
) -> list[tuple[bool, tuple[str, ...], tuple[str, ...]]]:
    """``(allowed, rule codes, errors)`` for each request of ``batch``, as Cedar decides them.

    The codes are the ``@id`` of every policy that determined the decision, sorted. The
    native call and ``cedarpy.is_authorized_batch`` give the same answers (a test checks);
    the native one skips the wrapper's per-result objects and its slower JSON parse.
    """
    native_entities = getattr(entities, "_inner", None)
    if _native_batch is None or native_entities is None:
        out = []
        for result in cedarpy.is_authorized_batch(batch, policies, entities):
            d = result.diagnostics
            ids = d.id_annotations_by_reason
            codes = tuple(sorted({ids.get(p, p) for p in d.reasons}))
            out.append((result.allowed, codes, tuple(d.errors)))
        return out
    return [_parse(text) for text in _native_batch(batch, policies, native_entities, None, False)]


_PARSED: dict[str, tuple[bool, tuple[str, ...], tuple[str, ...]]] = {}
_PARSED_MAX = 1024


def _parse(text: str) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """``(allowed, rule codes, errors)`` of one Cedar response.

    Responses differ only in their timing ``metrics`` for the same outcome, so the outcome
    is remembered by the text before them (a pure function of that text; at most
    ``_PARSED_MAX`` entries).
    """
    cut = text.rfind(',"metrics":')
    key = text[:cut] if cut > 0 else text
    parsed = _PARSED.get(key)
    if parsed is None:
        response = _response(text)
        d = response.get("diagnostics", {})
        ids = d.get("id_annotations_by_reason", {})
        codes = tuple(sorted({ids.get(p, p) for p in d.get("reason", ())}))
        parsed = (response["decision"] == "Allow", codes, tuple(d.get("errors", ())))
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


@dataclass(frozen=True)
class _Candidate:
    """A grant with the parts of a decision that depend only on the grant, built once per
    registry revision: the start of the Cedar context naming it, and its permit message."""

    grant: Grant
    context_head: str
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
        '{"grant":{"__entity":{"type":"Grant","id":' + _encode_str(g.grant_id) + "}}",
        f"grant {g.grant_id} v{g.version} ({g.purpose}; {g.legal_basis}; "
        f"approved by {g.approved_by}) covers this use",
    )


@dataclass
class _Snapshot:
    revision: int
    grants: dict[str, _Candidate]
    by_firm_dataset: dict[tuple[str, str], tuple[_Candidate, ...]]
    datasets: dict[str, DatasetPolicy]
    entities: cedarpy.Entities
    bad_grants: dict[str, UnreadableGrant] = field(default_factory=dict)
    bad_by_firm: dict[str, tuple[UnreadableGrant, ...]] = field(default_factory=dict)
    bad_datasets: dict[str, UnreadableDataset] = field(default_factory=dict)


def _uid(kind: str, ident: str) -> dict[str, dict[str, str]]:
    return {"__entity": {"type": kind, "id": ident}}


def _micro(value: float) -> int:
    return math.ceil(value * 1_000_000 - 1e-6)


def _dataset_items(datasets: list[DatasetPolicy]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for d in datasets:
        items.append(
            {
                "uid": {"type": "Dataset", "id": d.dataset_id},
                "attrs": {
                    "level": str(d.level),
                    "identity_column_uses": sorted(
                        f"{d.dataset_id}/{col}/{use}"
                        for col in d.identity_columns
                        for use in ColumnUse
                    ),
                },
                "parents": [],
            }
        )
    return items


def _grant_item(g: Grant) -> dict[str, Any]:
    column_uses = sorted(
        f"{name}/{col}/{use}"
        for name, terms in g.datasets.items()
        for col, rule in terms.columns.items()
        for use in rule.uses
    )
    return {
        "uid": {"type": "Grant", "id": g.grant_id},
        "attrs": {
            "firm": _uid("Firm", g.firm),
            "datasets": [_uid("Dataset", name) for name in sorted(g.datasets)],
            "purpose": g.purpose,
            "actions": [_uid("Action", str(a)) for a in sorted(g.actions)],
            "column_uses": column_uses,
            "epsilon_per_use_micro": math.floor(g.epsilon_per_use * 1_000_000 + 1e-6),
            "min_group_size": g.min_group_size,
            "models": sorted(g.models),
            "valid_from": int(g.valid_from.timestamp()),
            "valid_until": int(g.valid_until.timestamp()),
            "revoked": g.revoked,
        },
        "parents": [],
    }


def _entities(
    grants: list[Grant], datasets: list[DatasetPolicy]
) -> tuple[cedarpy.Entities, list[UnreadableGrant]]:
    """The Cedar entity set, and the grants Cedar (or the conversion) could not take.

    One grant Cedar refuses must not stop every decision: if the whole set is refused, each
    grant is tried on its own and the failing ones are left out (they permit nothing).
    """
    base = _dataset_items(datasets)
    items, bad = [], []
    for g in grants:
        try:
            items.append(_grant_item(g))
        except (ValueError, OverflowError, TypeError) as exc:
            bad.append(_unusable(g, type(exc).__name__))
    try:
        return cedarpy.Entities.from_json_str(json.dumps(base + items)), bad
    except Exception:  # noqa: BLE001 - Cedar's own error types; isolate the culprit below
        pass
    kept = []
    for item in items:
        try:
            cedarpy.Entities.from_json_str(json.dumps([*base, item]))
        except Exception:  # noqa: BLE001
            bad.append(
                UnreadableGrant(item["uid"]["id"], 0, None, "Cedar refuses this grant's entity")
            )
            continue
        kept.append(item)
    return cedarpy.Entities.from_json_str(json.dumps(base + kept)), bad


def _unusable(g: Grant, problem: str) -> UnreadableGrant:
    return UnreadableGrant(
        g.grant_id, g.version, g.firm, f"grant cannot be converted for Cedar ({problem})"
    )


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
        self.rules = load_rules() if rules is None else rules
        self.policy_digest = hashlib.sha256(self.rules.encode()).hexdigest()
        self._policies = cedarpy.PolicySet.from_str(self.rules)
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
            entities, refused = _entities(grants, datasets)
            bad = bad + refused
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
        # The context as a JSON string (cedarpy hands it to Cedar untouched), written out
        # directly: the grant's part is built once per registry revision, the rest here.
        prefix = ds + "/"
        column_uses = sorted({prefix + c.name + "/" + c.use for c in request.columns})
        model = "" if request.model is None else ',"model":' + _encode_str(request.model)
        tail = (
            f',"purpose":{_encode_str(request.purpose)}'
            f',"column_uses":[{",".join(map(_encode_str, column_uses))}]'
            f',"epsilon_micro":{_micro(request.epsilon):d}'
            f',"min_group_size":{request.min_group_size:d},"now":{now:d}{model}}}'
        )
        principal = {"type": "Firm", "id": request.firm}
        action = _ACTION_UIDS[request.action]
        resource = {"type": "Dataset", "id": ds}
        batch = [
            {
                "principal": principal,
                "action": action,
                "resource": resource,
                "context": candidate.context_head + tail,
            }
            for candidate in candidates
        ]
        results = _authorize(batch, self._policies, snap.entities)
        reasons: list[Reason] = []
        for candidate, (allowed, codes, errors) in zip(candidates, results, strict=True):
            grant = candidate.grant
            if errors:
                reasons.append(Reason("rule-error", "; ".join(errors), grant.grant_id))
                continue
            if allowed:
                permit = self._permit(request, candidate, codes)
                if permit.permit:
                    return permit
                reasons.extend(permit.reasons)
            elif codes:
                reasons.extend(_explain(code, request, grant, dataset, now) for code in codes)
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
        loss = Loss(request.epsilon, request.delta, request.rho)
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
            max(request.min_group_size, candidate.grant.min_group_size),
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
        msg = f"minimum group size {request.min_group_size} is below the grant's {g.min_group_size}"
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
