"""The rules and the record: grants, the policy engine, the privacy-budget ledger and the
regulators' transparency log. Imports nothing else of this project.

Start with :class:`policies.Authority`; see ``docs/policies.md``.
"""

from policies.authority import Authority, release_digest
from policies.composition import Loss, compose, zcdp_to_epsilon
from policies.datasets import DataLevel, DatasetPolicy
from policies.engine import Decision, Obligations, PolicyEngine, Reason
from policies.errors import (
    BudgetExceededError,
    InvalidRequestError,
    KeyFileError,
    LogIntegrityError,
    PolicyError,
    ReservationStateError,
    UnknownGrantError,
)
from policies.grants import Action, ColumnRule, ColumnUse, DatasetTerms, Grant
from policies.ledger import AccountStatus, BudgetLedger, Remaining, Reservation, ReservationState
from policies.log import TransparencyLog
from policies.registry import Registry
from policies.requests import ColumnRef, Request
from policies.treehead import SignedTreeHead
from policies.verify import VerificationError, VerifiedLog, verify_export

__all__ = [
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
    "Grant",
    "InvalidRequestError",
    "KeyFileError",
    "LogIntegrityError",
    "Loss",
    "Obligations",
    "PolicyEngine",
    "PolicyError",
    "Reason",
    "Registry",
    "Remaining",
    "Request",
    "Reservation",
    "ReservationState",
    "ReservationStateError",
    "SignedTreeHead",
    "TransparencyLog",
    "UnknownGrantError",
    "VerificationError",
    "VerifiedLog",
    "compose",
    "release_digest",
    "verify_export",
    "zcdp_to_epsilon",
]
