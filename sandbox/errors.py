"""The exceptions the sandbox raises. Each message tells the user what to do next.

Every public entry point of ``sandbox`` (the Python API and the ``sandbox`` command line)
raises only these, or the ``policies`` errors of the governed paths; never a parser, pydantic,
Polars, OpenDP, numpy or sqlite error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.errors import PrivacyParameterError as _PolicyPrivacyParameterError

if TYPE_CHECKING:
    from policies.engine import Decision


class SandboxError(Exception):
    """Base class of every error the sandbox raises on purpose."""


class ManifestError(SandboxError):
    """A dataset manifest is missing, malformed, or inconsistent with its data file."""


class CatalogError(SandboxError):
    """A catalog directory cannot be read, or a dataset is not in it."""


class QueryError(SandboxError):
    """A query was refused before any privacy was spent."""


class UnsupportedQuery(QueryError):
    """The SQL uses a construct the DP engine does not support."""


class UnknownColumn(QueryError):
    """The SQL names a column the manifest does not declare (or that may never be queried)."""


class MissingBounds(QueryError):
    """An aggregate needs public bounds (or keys) that the manifest does not declare."""


class PrivacyParameterError(QueryError, _PolicyPrivacyParameterError):
    """epsilon or delta is not finite, below the floor, or above what the dataset allows.

    Also a ``policies.errors.PrivacyParameterError``: one ``except`` catches both sides."""


class Denied(SandboxError):
    """The policy engine denied the request; ``decision`` holds every reason.

    Each reason's message says what to change (the grant, the purpose, the columns or the
    budget) before asking again."""

    def __init__(self, decision: Decision, hint: str = ""):
        self.decision = decision
        reasons = "; ".join(f"{r.code}: {r.message}" for r in decision.reasons)
        super().__init__(f"denied: {reasons}" + (f" ({hint})" if hint else ""))


class TrainingError(SandboxError):
    """A training job could not be set up from the catalog."""


class GenerateError(SandboxError, ValueError):
    """Bad input to the synthetic data generator; the message says what to change."""


class CredentialError(SandboxError):
    """A certificate, CA or API key could not be made, read or used; the message says what to do."""


class AuthenticationError(CredentialError):
    """A caller presented no credential, or one that does not verify (unknown, revoked, forged)."""


class RoleError(CredentialError):
    """An authenticated caller asked for something its role may not do (a firm cannot approve)."""


class InstructionRefused(SandboxError):
    """A department node refused an instruction; nothing ran and nothing was reserved.

    ``code`` names the check that failed: ``signature``, ``malformed``, ``not_yet_valid``,
    ``expired``, ``lifetime``, ``grant_expired``, ``revoked``, ``stale_grant``, ``replayed``,
    ``no_dataset_cap``, ``grant_budget`` or ``dataset_budget``."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class AdmissionStateError(SandboxError):
    """An admission was settled twice in conflicting ways, or is unknown to this node."""


class ProtocolError(SandboxError):
    """The protocol's generated code could not be made or is out of date with its .proto file."""


class NodeServiceError(SandboxError):
    """The department node service cannot start as configured (credentials, address, files)."""


class HubError(SandboxError):
    """The hub cannot serve a call as configured (a dataset it does not route, a bad setting)."""


class UnknownDatasetError(HubError):
    """The hub has no dataset of that name in its catalog; list the datasets first."""


class NodeUnavailableError(HubError):
    """The node holding a dataset did not answer; a reservation stays charged unless the node
    confirmed that nothing was released."""


class NodeRefusedError(HubError):
    """The node answered that it released nothing (NotReleased); the reservation was refunded.

    ``code`` is the node's own code for the check that failed."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class ClientError(SandboxError):
    """A call from the SDK (``sandbox.client``) failed; the message is the hub's one line, or
    ours, saying what to do next. ``code`` is the gRPC status name (``UNKNOWN`` if none)."""

    def __init__(self, message: str, code: str = "UNKNOWN"):
        self.code = code
        super().__init__(message)


class ProfileError(ClientError):
    """The client profile is missing, incomplete or unsafe (an API key others may read)."""


class ClientUnauthenticated(ClientError):
    """The hub did not accept the credential (none, unknown, revoked or foreign)."""


class ClientPermissionDenied(ClientError):
    """The hub refused: the caller's role or grant does not allow this."""


class ClientBudgetExhausted(ClientPermissionDenied):
    """The hub refused only because the privacy budget is spent."""


class ClientInvalidRequest(ClientError):
    """The hub found the request malformed (bad SQL, privacy parameters, index)."""


class ClientNotFound(ClientError):
    """The hub has no such dataset or grant."""


class ClientNotReleased(ClientError):
    """The node released nothing (the budget was refunded), or the call cannot run now."""


class HubUnavailable(ClientError):
    """The hub (or the node behind it) did not answer; see the message for whether budget was
    charged."""


class VerificationFailed(ClientError):
    """An answer's signed tree head, release digest or inclusion proof does not verify."""


class UnknownResultError(UnknownDatasetError):
    """No result of that id for the calling firm (another firm's result is answered the same
    way); ``NOT_FOUND`` like an unknown dataset."""


class TaskFormatError(SandboxError, ValueError):
    """A federated task (Flower message <-> ``FederatedTask``) holds something that may not
    cross the wire: an untyped value, an unknown dtype, or more than a node may send back."""


class UnknownJobError(UnknownDatasetError):
    """No training job or result with this id for the calling firm (answered ``NOT_FOUND``,
    whether it does not exist or is another firm's)."""
