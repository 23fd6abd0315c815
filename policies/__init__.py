"""The rules and the record: grants, the policy engine, the privacy-budget ledger and the
regulators' transparency log. Imports nothing else of this project.

Start with :class:`policies.Authority`: ``decide`` a request, then ``use`` the permit (the one
governed-use path, :mod:`policies.use`). ``docs/policies.md`` maps where each concept lives.
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
