"""Every exception the federation package raises, under one root, :class:`FederationError`.

Each message says what went wrong and what the caller can do next. Errors about the job's
input also subclass :class:`ValueError`, so callers that treat bad input generically still can.
"""


class FederationError(Exception):
    """Base class of every error raised by ``federation``."""


class InvalidJobError(FederationError, ValueError):
    """The job specification is inconsistent or names something that is not approved."""


class BudgetExceededError(FederationError):
    """The privacy cost predicted for a job exceeds the budget it was given.

    Raised before any training starts, so nothing has been spent.
    """


class NodeDataError(FederationError, ValueError):
    """A node's loader returned data that does not match the job, or the node has none."""


class NotEnoughNodesError(FederationError):
    """Fewer nodes than the job's minimum answered a round."""


class NodeBudgetRefusedError(FederationError):
    """A node refused to train because the job would exceed what was reserved on it."""


class NodeApprovalError(FederationError):
    """A node refused a job that is not the plan approved for its grant and dataset, a grant it
    does not know, or a non-private job on person data."""


class NodeStateError(FederationError):
    """A node's own state (its secret key or its approvals store) is missing or damaged."""


class MechanismError(FederationError):
    """A DP mechanism would not give the guarantee it was accounted with; nothing was released.

    This is a defect, never the caller's input: report it with the job's configuration hash.
    """
