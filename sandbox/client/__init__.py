"""The sandbox SDK: typed clients of the hub for firms and regulators. See ``docs/client.md``.

* :mod:`sandbox.client.profile` — :class:`Profile` (hub address, CA, certificate and key or API
  key; from a 0600 profile file or ``SANDBOX_*`` environment variables), the connection;
* :mod:`sandbox.client.firm` — :class:`FirmClient` (datasets, describe, query, remaining) and
  the offline :func:`verify_answer`;
* :mod:`sandbox.client.department` — :class:`DepartmentClient` (register, review, revoke,
  budgets); :mod:`sandbox.client.access` and :mod:`sandbox.client.jobs` — requests, grants and
  training jobs; :mod:`sandbox.client.results` — stored results, checked offline;
* :mod:`sandbox.client.regulator` — :class:`RegulatorClient` (tree heads, proofs, entries,
  export in the offline audit format).

Importing this package loads grpc, protobuf and the log's proof checks only: no query engine,
no training stack, so a command-line query starts fast.
"""

from sandbox.client.access import GrantInfo, RequestInfo, Review, access_terms
from sandbox.client.department import DepartmentClient
from sandbox.client.firm import (
    Account,
    Budget,
    Cell,
    ColumnInfo,
    DatasetInfo,
    FirmClient,
    MockData,
    QueryAnswer,
    release_bytes,
    verify_answer,
)
from sandbox.client.jobs import JobEvent, JobInfo, JobSubmitted, TrainedModel
from sandbox.client.profile import DEFAULT_PROFILE, Profile
from sandbox.client.regulator import (
    ConsistencyProof,
    EntriesPage,
    InclusionProof,
    LogEntry,
    RegulatorClient,
    check_consistency,
    check_inclusion,
)
from sandbox.errors import ClientError, ProfileError, VerificationFailed

__all__ = [
    "DepartmentClient",
    "GrantInfo",
    "JobEvent",
    "JobInfo",
    "JobSubmitted",
    "MockData",
    "RequestInfo",
    "Review",
    "TrainedModel",
    "access_terms",
    "DEFAULT_PROFILE",
    "Account",
    "Budget",
    "Cell",
    "ClientError",
    "ColumnInfo",
    "ConsistencyProof",
    "DatasetInfo",
    "EntriesPage",
    "FirmClient",
    "InclusionProof",
    "LogEntry",
    "Profile",
    "ProfileError",
    "QueryAnswer",
    "RegulatorClient",
    "VerificationFailed",
    "check_consistency",
    "check_inclusion",
    "release_bytes",
    "verify_answer",
]
