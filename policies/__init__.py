"""The rules and the record: grants, the policy engine, the privacy-budget ledger and the
regulators' transparency log. Imports nothing else of this project.

Start with :class:`policies.Authority`; see ``docs/policies.md``.
"""

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
    ReservationStateError,
    StateError,
    UnknownGrantError,
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
from policies.registry import Registry, UnreadableDataset, UnreadableGrant
from policies.requests import ColumnRef, Request
from policies.treehead import SignedTreeHead
from policies.verify import VerificationError, VerifiedLog, verify_export

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
    "Obligations",
    "PolicyEngine",
    "PolicyError",
    "PrivacyParameterError",
    "Reason",
    "Registry",
    "Remaining",
    "Request",
    "Reservation",
    "ReservationState",
    "ReservationStateError",
    "SignedTreeHead",
    "StateError",
    "TransparencyLog",
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
