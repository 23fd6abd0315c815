"""Every exception the policies package raises, under one root: :class:`PolicyError`.

Each message says what to do next. Some also derive from ``ValueError`` or ``KeyError`` so
code that catches those keeps working; none of ours is raised as a bare built-in error.
"""

from __future__ import annotations


class PolicyError(Exception):
    """Base class for every error raised by ``policies``."""


class InvalidRequestError(PolicyError, ValueError):
    """A request, grant or entry is malformed; nothing was stored or charged."""


class UnknownGrantError(PolicyError, KeyError):
    """No grant with this id exists."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown grant"


class BudgetExceededError(PolicyError):
    """A reservation would take an account past its cap; nothing was charged."""


class ReservationStateError(PolicyError):
    """A reservation was committed or refunded twice, or does not exist."""


class LogIntegrityError(PolicyError):
    """The transparency log store is inconsistent with its own Merkle tree."""


class KeyFileError(PolicyError):
    """A signing or public key file is missing, unreadable or has unsafe permissions."""


class PrivacyParameterError(InvalidRequestError):
    """An epsilon or delta is not finite, below the floor, or above what the data allows."""


class StateError(PolicyError):
    """The state directory or its database cannot be read or written."""


class LedgerMismatchError(LogIntegrityError):
    """The budget ledger differs from what the transparency log implies (reset or edited)."""


class DecisionError(InvalidRequestError):
    """A decision was not issued by this authority, or was already used for a reservation."""


class GrantRevokedError(PolicyError):
    """The grant was revoked (or became unusable) after the decision: nothing may be released."""


class ProofError(PolicyError, ValueError):
    """A Merkle proof does not verify, or its parameters are out of range."""


class TreeHeadError(PolicyError, ValueError):
    """A tree head is malformed or its signature does not verify."""


class VerificationError(PolicyError, ValueError):
    """The export is not a complete, untampered log signed by the given key."""


class InstructionError(PolicyError, ValueError):
    """A signed instruction or notice is malformed, not canonical, or its signature fails."""


class InstructionSignatureError(InstructionError):
    """The signature does not verify under the authority's key, or names another key."""


class UnknownAccessRequestError(InvalidRequestError):
    """No access request with this id exists (or it is not the caller's to see)."""


class ReviewPermissionError(PolicyError):
    """A department acted on a dataset of an access request that another department owns."""


class RequestStateError(PolicyError):
    """An access request or one of its reviews was already decided: the step cannot be taken."""


class WitnessError(PolicyError, ValueError):
    """A witness refused to cosign a tree head, or a cosignature does not verify."""
