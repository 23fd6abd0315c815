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

from typing import TYPE_CHECKING

from sandbox.lazy import lazy_exports

if TYPE_CHECKING:
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

#: Where each public name lives, imported on first use: a command-line query loads only
#: the modules it needs.
_WHERE = {
    "GrantInfo": "sandbox.client.access",
    "RequestInfo": "sandbox.client.access",
    "Review": "sandbox.client.access",
    "access_terms": "sandbox.client.access",
    "DepartmentClient": "sandbox.client.department",
    "Account": "sandbox.client.firm",
    "Budget": "sandbox.client.firm",
    "Cell": "sandbox.client.firm",
    "ColumnInfo": "sandbox.client.firm",
    "DatasetInfo": "sandbox.client.firm",
    "FirmClient": "sandbox.client.firm",
    "MockData": "sandbox.client.firm",
    "QueryAnswer": "sandbox.client.firm",
    "release_bytes": "sandbox.client.firm",
    "verify_answer": "sandbox.client.firm",
    "JobEvent": "sandbox.client.jobs",
    "JobInfo": "sandbox.client.jobs",
    "JobSubmitted": "sandbox.client.jobs",
    "TrainedModel": "sandbox.client.jobs",
    "DEFAULT_PROFILE": "sandbox.client.profile",
    "Profile": "sandbox.client.profile",
    "ConsistencyProof": "sandbox.client.regulator",
    "EntriesPage": "sandbox.client.regulator",
    "InclusionProof": "sandbox.client.regulator",
    "LogEntry": "sandbox.client.regulator",
    "RegulatorClient": "sandbox.client.regulator",
    "check_consistency": "sandbox.client.regulator",
    "check_inclusion": "sandbox.client.regulator",
    "ClientError": "sandbox.errors",
    "ProfileError": "sandbox.errors",
    "VerificationFailed": "sandbox.errors",
}

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


__getattr__ = lazy_exports(__name__, _WHERE)
