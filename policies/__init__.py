"""The rules and the record: grants, the policy engine, the privacy-budget ledger and the
regulators' transparency log. Imports nothing else of this project.

Start with :class:`policies.Authority`: ``decide`` a request, then ``use`` the permit (the one
governed-use path, :mod:`policies.use`). ``docs/policies.md`` maps where each concept lives.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.authority import Authority, default_keys_dir, release_digest
    from policies.composition import Loss, compose, zcdp_to_epsilon
    from policies.datasets import DataLevel, DatasetPolicy, load_dataset_policy_file
    from policies.engine import Decision, Obligations, PolicyEngine, Reason
    from policies.errors import (
        BudgetExceededError,
        DecisionError,
        GrantRevokedError,
        InvalidRequestError,
        KeyFileError,
        LedgerMismatchError,
        LogIntegrityError,
        PolicyError,
        PrivacyParameterError,
        ProofError,
        ReservationStateError,
        StateError,
        TreeHeadError,
        UnknownGrantError,
        VerificationError,
    )
    from policies.grants import Action, ColumnRule, ColumnUse, DatasetTerms, Grant, load_grant_file
    from policies.ledger import (
        AccountKey,
        AccountStatus,
        BudgetLedger,
        Remaining,
        Reservation,
        ReservationState,
    )
    from policies.log import TransparencyLog
    from policies.loss import LossUnits, PrivacyLoss
    from policies.registry import Registry, UnreadableDataset, UnreadableGrant
    from policies.requests import ColumnRef, Request
    from policies.treehead import SignedTreeHead
    from policies.use import Outcome, Settled
    from policies.verify import VerifiedLog, verify_export

#: Each public name and the module that defines it, imported on first use so that importing
#: one light module (``policies.errors``, ``policies.merkle``) does not load the engine.
_LAZY = {
    "AccountKey": "policies.ledger",
    "AccountStatus": "policies.ledger",
    "Action": "policies.grants",
    "Authority": "policies.authority",
    "BudgetExceededError": "policies.errors",
    "BudgetLedger": "policies.ledger",
    "ColumnRef": "policies.requests",
    "ColumnRule": "policies.grants",
    "ColumnUse": "policies.grants",
    "DataLevel": "policies.datasets",
    "DatasetPolicy": "policies.datasets",
    "DatasetTerms": "policies.grants",
    "Decision": "policies.engine",
    "DecisionError": "policies.errors",
    "Grant": "policies.grants",
    "GrantRevokedError": "policies.errors",
    "InvalidRequestError": "policies.errors",
    "KeyFileError": "policies.errors",
    "LedgerMismatchError": "policies.errors",
    "LogIntegrityError": "policies.errors",
    "Loss": "policies.composition",
    "LossUnits": "policies.loss",
    "Obligations": "policies.engine",
    "Outcome": "policies.use",
    "PolicyEngine": "policies.engine",
    "PolicyError": "policies.errors",
    "PrivacyLoss": "policies.loss",
    "PrivacyParameterError": "policies.errors",
    "ProofError": "policies.errors",
    "Reason": "policies.engine",
    "Registry": "policies.registry",
    "Remaining": "policies.ledger",
    "Request": "policies.requests",
    "Reservation": "policies.ledger",
    "ReservationState": "policies.ledger",
    "ReservationStateError": "policies.errors",
    "Settled": "policies.use",
    "SignedTreeHead": "policies.treehead",
    "StateError": "policies.errors",
    "TransparencyLog": "policies.log",
    "TreeHeadError": "policies.errors",
    "UnknownGrantError": "policies.errors",
    "UnreadableDataset": "policies.registry",
    "UnreadableGrant": "policies.registry",
    "VerificationError": "policies.errors",
    "VerifiedLog": "policies.verify",
    "compose": "policies.composition",
    "default_keys_dir": "policies.authority",
    "load_dataset_policy_file": "policies.datasets",
    "load_grant_file": "policies.grants",
    "release_digest": "policies.authority",
    "verify_export": "policies.verify",
    "zcdp_to_epsilon": "policies.composition",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AccountKey",
    "AccountStatus",
    "Action",
    "Authority",
    "BudgetExceededError",
    "BudgetLedger",
    "ColumnRef",
    "ColumnRule",
    "ColumnUse",
    "DataLevel",
    "DatasetPolicy",
    "DatasetTerms",
    "Decision",
    "DecisionError",
    "GrantRevokedError",
    "Grant",
    "InvalidRequestError",
    "KeyFileError",
    "LedgerMismatchError",
    "LogIntegrityError",
    "Loss",
    "LossUnits",
    "Obligations",
    "Outcome",
    "PolicyEngine",
    "PolicyError",
    "PrivacyLoss",
    "PrivacyParameterError",
    "ProofError",
    "Reason",
    "Registry",
    "Remaining",
    "Request",
    "Reservation",
    "ReservationState",
    "ReservationStateError",
    "Settled",
    "SignedTreeHead",
    "StateError",
    "TransparencyLog",
    "TreeHeadError",
    "UnknownGrantError",
    "UnreadableDataset",
    "UnreadableGrant",
    "VerificationError",
    "VerifiedLog",
    "compose",
    "default_keys_dir",
    "load_dataset_policy_file",
    "load_grant_file",
    "release_digest",
    "verify_export",
    "zcdp_to_epsilon",
]
