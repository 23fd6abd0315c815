"""The one module that talks to Cedar (``cedarpy``), through its public API only.

Grants and datasets become Cedar entities, and a request becomes a Cedar request whose
context is a plain dict; both are built as data, never as text. Cedar has no floats, so
epsilon travels as integer micro-epsilon (:attr:`policies.loss.PrivacyLoss.units`), and
times as integer seconds.

>>> core = DatasetPolicy(dataset_id="tax", department="tax bureau", level="core",
...                      epsilon_cap=1.0, delta_cap=0.0)
>>> entities, refused = entity_set([], [core])
>>> rules = CedarRules('@id("core") forbid (principal, action, resource) '
...                    'when { resource.level == "core" };')
>>> rules.authorize([CedarRequest("acme", "query", "tax", {"now": 0})], entities)
[CedarOutcome(allowed=False, codes=('core',), errors=())]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cedarpy

from policies.datasets import DatasetPolicy
from policies.grants import ColumnUse, Grant
from policies.loss import EPS_UNITS, cap_units

#: A parsed Cedar entity set (opaque; reuse it across decisions).
Entities = cedarpy.Entities

#: The rule files the engine enforces, global rules first.
RULE_FILES = ("global.cedar", "grants.cedar")


def load_rules() -> str:
    """The Cedar policy text the engine enforces (global rules first)."""
    folder = resources.files("policies") / "rules"
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in RULE_FILES)


def uid(kind: str, ident: str) -> dict[str, dict[str, str]]:
    """A reference to an entity, as an attribute or context value."""
    return {"__entity": {"type": kind, "id": ident}}


@dataclass(frozen=True)
class CedarRequest:
    """One Cedar request: who (a firm) does what (an action) to which dataset, in a context."""

    firm: str
    action: str
    dataset: str
    context: dict[str, Any]

    def to_cedar(self) -> dict[str, Any]:
        return {
            "principal": {"type": "Firm", "id": self.firm},
            "action": {"type": "Action", "id": self.action},
            "resource": {"type": "Dataset", "id": self.dataset},
            "context": self.context,
        }


@dataclass(frozen=True)
class CedarOutcome:
    """Cedar's answer: allowed or not, the ``@id`` of every policy that decided it (sorted),
    and any evaluation errors."""

    allowed: bool
    codes: tuple[str, ...]
    errors: tuple[str, ...]


class CedarRules:
    """A parsed Cedar policy set and its SHA-256 digest (what the log records)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        self._policies = cedarpy.PolicySet.from_str(text)

    def authorize(
        self, requests: Sequence[CedarRequest], entities: cedarpy.Entities
    ) -> list[CedarOutcome]:
        """Cedar's outcome for each of ``requests`` (one batch call)."""
        results = cedarpy.is_authorized_batch(
            [r.to_cedar() for r in requests], self._policies, entities
        )
        out = []
        for result in results:
            d = result.diagnostics
            ids = d.id_annotations_by_reason
            codes = tuple(sorted({ids.get(p, p) for p in d.reasons}))
            out.append(CedarOutcome(result.allowed, codes, tuple(d.errors)))
        return out


def dataset_entity(d: DatasetPolicy) -> dict[str, Any]:
    """A dataset as a Cedar entity: its level and the column uses that are never allowed."""
    return {
        "uid": {"type": "Dataset", "id": d.dataset_id},
        "attrs": {
            "level": str(d.level),
            "identity_column_uses": sorted(
                f"{d.dataset_id}/{col}/{use}" for col in d.identity_columns for use in ColumnUse
            ),
        },
        "parents": [],
    }


def grant_entity(g: Grant) -> dict[str, Any]:
    """A grant as a Cedar entity (its per-use cap in micro-epsilon, rounded down)."""
    column_uses = sorted(
        f"{name}/{col}/{use}"
        for name, terms in g.datasets.items()
        for col, rule in terms.columns.items()
        for use in rule.uses
    )
    return {
        "uid": {"type": "Grant", "id": g.grant_id},
        "attrs": {
            "firm": uid("Firm", g.firm),
            "datasets": [uid("Dataset", name) for name in sorted(g.datasets)],
            "purpose": g.purpose,
            "actions": [uid("Action", str(a)) for a in sorted(g.actions)],
            "column_uses": column_uses,
            "epsilon_per_use_micro": cap_units(g.epsilon_per_use, EPS_UNITS),
            "min_group_size": g.min_group_size,
            "models": sorted(g.models),
            "valid_from": int(g.valid_from.timestamp()),
            "valid_until": int(g.valid_until.timestamp()),
            "revoked": g.revoked,
        },
        "parents": [],
    }


def _parse(items: Iterable[dict[str, Any]]) -> cedarpy.Entities:
    return cedarpy.Entities.from_json_str(json.dumps(list(items)))


def entity_set(
    grants: Sequence[Grant], datasets: Sequence[DatasetPolicy]
) -> tuple[cedarpy.Entities, dict[str, str]]:
    """The Cedar entity set, and why each grant it had to leave out was left out.

    One grant Cedar refuses must not stop every decision: if the whole set is refused, each
    grant is tried on its own and the failing ones are left out (they permit nothing).
    """
    base = [dataset_entity(d) for d in datasets]
    items: list[dict[str, Any]] = []
    refused: dict[str, str] = {}
    for g in grants:
        try:
            items.append(grant_entity(g))
        except (ValueError, OverflowError, TypeError) as exc:
            refused[g.grant_id] = f"grant cannot be converted for Cedar ({type(exc).__name__})"
    try:
        return _parse(base + items), refused
    except Exception:  # noqa: BLE001 - Cedar's own error types; isolate the culprit below
        pass
    kept = []
    for item in items:
        try:
            _parse([*base, item])
        except Exception:  # noqa: BLE001
            refused[item["uid"]["id"]] = "Cedar refuses this grant's entity"
            continue
        kept.append(item)
    return _parse(base + kept), refused
