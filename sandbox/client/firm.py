"""``FirmClient``: a data-using firm's (数据使用方) typed client of the hub's ``FirmService``.

Browse the catalog's public metadata, ask a DP query, read the remaining budget, and check every
answer offline: the tree head's signature with the authority's public key
(:func:`policies.treehead.verify_tree_head`), the values against the logged release digest,
and the release entry's inclusion proof against that head
(:func:`policies.merkle.verify_inclusion`).
The firm trusts nothing it cannot check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import date
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from policies.errors import ProofError, TreeHeadError
from policies.merkle import leaf_hash, verify_inclusion
from policies.treehead import SignedTreeHead, verify_tree_head
from sandbox.client.access import RequestInfo
from sandbox.client.jobs import JobEvent, JobInfo, JobSubmitted
from sandbox.client.profile import DEFAULT_TIMEOUT_S, Connection, Profile
from sandbox.errors import ClientError, VerificationFailed
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.protocol.v1 import sandbox_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from sandbox.client.results import StoredResult

Scalar = bool | int | float | str | date | None


#: Seconds a job submission may take (every node accepts the plan before the hub answers).
SUBMIT_TIMEOUT_S = 180.0


def scalar(value: pb.Value) -> Scalar:
    """A protobuf ``Value`` as a Python value (no kind set: ``None``)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "date_value":
        return date.fromisoformat(value.date_value)
    out: Scalar = getattr(value, kind)
    return out


def release_bytes(result: pb.QueryResult) -> bytes:
    """The canonical bytes of a release, as the hub logs their digest (protobuf field names,
    sorted keys, no spaces, UTF-8); the same function as ``sandbox.hub.release_bytes``.

    >>> release_bytes(pb.QueryResult(dataset="pums", outputs=["n"], epsilon_spent=0.5))
    b'{"dataset":"pums","epsilon_spent":0.5,"outputs":["n"]}'
    """
    data = json_format.MessageToDict(result, preserving_proto_field_name=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Cell:
    """One released cell: a group key (no interval) or a DP aggregate with its interval."""

    value: Scalar
    ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    role: str
    bounds: tuple[Scalar, Scalar] | None
    categories: tuple[Scalar, ...]
    description: str


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's public metadata, and the node that holds it."""

    name: str
    title: str
    department: str
    city: str | None
    description: str
    classification: str
    id_column: str | None
    max_rows_per_person: int
    row_bound: int
    max_delta: float | None
    out_of_bounds: str
    columns: tuple[ColumnInfo, ...]
    node: str

    @classmethod
    def from_pb(cls, m: pb.DatasetMetadata) -> DatasetInfo:
        columns = tuple(
            ColumnInfo(
                c.name,
                c.type,
                c.role,
                (scalar(c.bounds.low), scalar(c.bounds.high)) if c.HasField("bounds") else None,
                tuple(scalar(v) for v in c.categories),
                c.description,
            )
            for c in m.columns
        )
        unit = m.privacy_unit
        return cls(
            name=m.name,
            title=m.title,
            department=m.department,
            city=m.city if m.HasField("city") else None,
            description=m.description,
            classification=m.classification,
            id_column=unit.id_column if unit.HasField("id_column") else None,
            max_rows_per_person=unit.max_rows,
            row_bound=m.row_bound,
            max_delta=m.max_delta if m.HasField("max_delta") else None,
            out_of_bounds=m.out_of_bounds,
            columns=columns,
            node=m.node,
        )


@dataclass(frozen=True)
class Account:
    """One budget account (``BudgetAccount``): a grant's on a dataset, or the dataset's own."""

    account: str
    grant_id: str
    dataset: str
    epsilon_cap: float
    delta_cap: float
    epsilon_spent: float
    delta_spent: float
    basic_epsilon: float
    rho: float
    pending: int
    committed: int
    refunded: int
    withheld: int

    @classmethod
    def from_pb(cls, m: pb.BudgetAccount) -> Account:
        return cls(**{f.name: getattr(m, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Budget:
    """What may still be spent under both accounts, and the accounts themselves."""

    epsilon: float
    delta: float
    grant: Account
    dataset: Account


def _cells(result: pb.QueryResult) -> tuple[dict[str, Cell], ...]:
    out = []
    for group in result.groups:
        cells = {}
        for name, cell in zip(result.outputs, group.cells, strict=False):
            ci = (cell.ci95.low, cell.ci95.high) if cell.HasField("ci95") else None
            cells[name] = Cell(scalar(cell.value), ci)
        out.append(cells)
    return tuple(out)


@dataclass(frozen=True)
class QueryAnswer:
    """A DP release and the proof that it is in the transparency log.

    ``rows`` are the released groups, each a mapping from output name to :class:`Cell` (value
    and 95% interval). ``release`` holds the canonical bytes the log's digest covers; ``entry``
    the release entry's canonical log bytes when the caller has them (see :meth:`verify`).
    """

    result_id: str
    grant_id: str
    dataset: str
    sql: str
    outputs: tuple[str, ...]
    rows: tuple[dict[str, Cell], ...]
    confidence: float
    epsilon_spent: float
    delta_spent: float
    suppressed_groups: int
    release_digest: str
    log_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...] = field(repr=False)
    tree_head: SignedTreeHead = field(repr=False)
    release: bytes = field(repr=False)
    entry: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_pb(cls, reply: pb.SubmitQueryResponse) -> QueryAnswer:
        r, log, h = reply.result, reply.log, reply.log.tree_head
        entry = bytes(getattr(log, "entry", b"")) or None  # when the hub sends the entry
        return cls(
            result_id=reply.result_id,
            grant_id=reply.grant_id,
            dataset=r.dataset,
            sql=r.sql,
            outputs=tuple(r.outputs),
            rows=_cells(r),
            confidence=r.confidence,
            epsilon_spent=r.epsilon_spent,
            delta_spent=r.delta_spent,
            suppressed_groups=r.suppressed_groups,
            release_digest=reply.release_digest,
            log_index=log.index,
            tree_size=log.tree_size,
            inclusion_proof=tuple(bytes(p) for p in log.inclusion_proof),
            tree_head=SignedTreeHead(h.size, h.root, h.timestamp_ms, h.key_id, h.signature),
            release=release_bytes(r),
            entry=entry,
        )

    def values(self) -> list[dict[str, Scalar]]:
        """The released values only, one mapping per group."""
        return [{k: c.value for k, c in cells.items()} for cells in self.rows]


def verify_answer(
    answer: QueryAnswer, authority_public_key: Ed25519PublicKey, entry: bytes | None = None
) -> dict[str, Any]:
    """Check ``answer`` offline and return its log entry; raise ``VerificationFailed``.

    1. the tree head is signed by ``authority_public_key`` and is the tree the proof is for;
    2. the answer's values are those of ``answer.release`` and its SHA-256 is the digest;
    3. the release entry (``entry`` or ``answer.entry``) hashes, through the inclusion proof,
       to the signed root, and names this release: kind, index, digest, dataset, grant, id.
    """
    head = answer.tree_head
    try:
        verify_tree_head(head, authority_public_key)
    except TreeHeadError as exc:
        raise VerificationFailed(f"{exc}; do not trust this answer", "VERIFY") from None
    if answer.tree_size != head.size:
        raise VerificationFailed(
            f"the proof is for a tree of {answer.tree_size} entries but the signed head has "
            f"{head.size}; do not trust this answer",
            "VERIFY",
        )
    if hashlib.sha256(answer.release).hexdigest() != answer.release_digest:
        raise VerificationFailed(
            "the release bytes do not match the release digest; do not trust this answer",
            "VERIFY",
        )
    try:
        result = json_format.Parse(answer.release, pb.QueryResult())
    except json_format.ParseError:
        raise VerificationFailed("the release bytes are not a query result", "VERIFY") from None
    shown = (answer.dataset, answer.sql, answer.outputs, answer.rows, answer.epsilon_spent)
    released = (result.dataset, result.sql, tuple(result.outputs), _cells(result))
    if shown != (*released, result.epsilon_spent) or answer.delta_spent != result.delta_spent:
        raise VerificationFailed(
            "the answer's values differ from the released bytes; do not trust this answer",
            "VERIFY",
        )
    body_bytes = entry if entry is not None else answer.entry
    if body_bytes is None:
        raise VerificationFailed(
            f"no log entry bytes for entry {answer.log_index}, so its inclusion cannot be "
            "checked; pass entry= (from a regulator's InclusionProof or a published log)",
            "VERIFY",
        )
    try:
        verify_inclusion(
            answer.log_index, head.size, leaf_hash(body_bytes), answer.inclusion_proof, head.root
        )
    except ProofError as exc:
        raise VerificationFailed(f"{exc}; do not trust this answer", "VERIFY") from None
    try:
        body: dict[str, Any] = json.loads(body_bytes)
    except ValueError:
        raise VerificationFailed("the log entry is not JSON", "VERIFY") from None
    expected = {
        "kind": "release",
        "index": answer.log_index,
        "release_sha256": answer.release_digest,
        "dataset": answer.dataset,
        "grant_id": answer.grant_id,
        "reservation_id": answer.result_id,
    }
    wrong = sorted(k for k, v in expected.items() if body.get(k) != v)
    if wrong:
        raise VerificationFailed(
            f"the logged entry {answer.log_index} is not this release (fields {wrong} differ); "
            "do not trust this answer",
            "VERIFY",
        )
    return body


@dataclass(frozen=True)
class MockData:
    """Synthetic column values from public metadata only; ``note`` says so."""

    dataset: str
    columns: dict[str, list[Scalar]]
    note: str


class FirmClient:
    """A firm's connection to the hub. Use as a context manager or call :meth:`close`.

    ``FirmClient()`` reads the profile (:meth:`Profile.load`); errors are
    :class:`sandbox.errors.ClientError` subclasses carrying the hub's message.
    """

    def __init__(self, profile: Profile | None = None, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.connection = Connection(profile or Profile.load(), timeout)
        self._stub = pb_grpc.FirmServiceStub(self.connection.channel)

    def __enter__(self) -> FirmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def datasets(self) -> list[DatasetInfo]:
        """Every dataset in the catalog, as public metadata."""
        reply = self.connection.call(self._stub.ListDatasets, pb.ListDatasetsRequest())
        return [DatasetInfo.from_pb(d) for d in reply.datasets]

    def describe(self, name: str) -> DatasetInfo:
        """One dataset's public metadata (``ClientNotFound`` if there is none of that name)."""
        request = pb.DescribeDatasetRequest(dataset=name)
        return DatasetInfo.from_pb(
            self.connection.call(self._stub.DescribeDataset, request).dataset
        )

    def query(
        self,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        *,
        purpose: str,
        grant_id: str | None = None,
        min_group_size: int | None = None,
    ) -> QueryAnswer:
        """Ask a DP query under one of this firm's grants (the hub picks one unless
        ``grant_id`` is given); spends at most ``epsilon``, ``delta`` of it."""
        request = pb.SubmitQueryRequest(
            sql=sql, purpose=purpose, epsilon=epsilon, delta=delta, grant_id=grant_id
        )
        if min_group_size is not None:
            request.min_group_size = min_group_size
        reply = self.connection.call(self._stub.SubmitQuery, request)
        return QueryAnswer.from_pb(reply)

    def remaining(self, grant_id: str = "", dataset: str = "") -> Budget:
        """What this firm may still spend under ``grant_id`` on ``dataset``."""
        request = pb.RemainingBudgetRequest(grant_id=grant_id, dataset=dataset)
        reply = self.connection.call(self._stub.RemainingBudget, request)
        return Budget(
            reply.epsilon,
            reply.delta,
            Account.from_pb(reply.grant),
            Account.from_pb(reply.dataset),
        )

    def mock(self, dataset: str, count: int = 20) -> MockData:
        """Synthetic values per column, drawn from ``dataset``'s public metadata only (the
        hub draws them with a fresh seed; nothing comes from the data)."""
        request = pb.MockDataRequest(dataset=dataset, count=count)
        reply = self.connection.call(self._stub.MockData, request)
        columns = {c.name: [scalar(v) for v in c.values] for c in reply.columns}
        return MockData(reply.dataset, columns, reply.note)

    def request_access(self, terms: Any = None, **fields: Any) -> RequestInfo:
        """Ask for access: ``terms`` is a ``pb.AccessTerms``, a mapping or a YAML file path,
        or give the fields as keywords (see :func:`sandbox.client.access.access_terms`)."""
        from sandbox.client.access import access_terms

        message = terms if isinstance(terms, pb.AccessTerms) else access_terms(terms or fields)
        request = pb.RequestAccessRequest(terms=message)
        reply = self.connection.call(self._stub.RequestAccess, request)
        return RequestInfo.from_pb(reply.request)

    def requests(self) -> list[RequestInfo]:
        """This firm's access requests, with each department's answer."""
        reply = self.connection.call(self._stub.ListAccessRequests, pb.ListAccessRequestsRequest())
        return [RequestInfo.from_pb(r) for r in reply.requests]

    def withdraw(self, request_id: str) -> RequestInfo:
        """Withdraw a pending access request."""
        request = pb.WithdrawRequestRequest(request_id=request_id)
        return RequestInfo.from_pb(
            self.connection.call(self._stub.WithdrawRequest, request).request
        )

    def submit_job(self, spec: Any, *, purpose: str, grant_id: str | None = None) -> JobSubmitted:
        """Submit a DP training job: ``spec`` is a ``federation.job.JobSpec``, a mapping or a
        YAML/JSON file path (validated here first), or a ``pb.JobSpec``."""
        from sandbox.client.jobs import job_spec

        message = spec if isinstance(spec, pb.JobSpec) else job_spec(spec)
        request = pb.SubmitTrainingJobRequest(spec=message, purpose=purpose, grant_id=grant_id)
        # Each node accepts the signed plan before the hub answers (a node loads its training
        # stack on its first job): allow more than a query's time.
        timeout = max(self.connection.timeout, SUBMIT_TIMEOUT_S)
        reply = self.connection.call(self._stub.SubmitTrainingJob, request, timeout)
        return JobSubmitted.from_pb(reply)

    def follow(self, job_id: str) -> Iterator[JobEvent]:
        """The job's events as they happen, until it finishes (no time limit)."""
        stream = self.connection.stream(self._stub.FollowJob, pb.FollowJobRequest(job_id=job_id))
        for event in stream:
            yield JobEvent.from_pb(event)

    def jobs(self) -> list[JobInfo]:
        """This firm's training jobs."""
        reply = self.connection.call(self._stub.ListJobs, pb.ListJobsRequest())
        return [JobInfo.from_pb(j) for j in reply.jobs]

    def result(
        self, result_id: str, authority_public_key: Ed25519PublicKey | None = None
    ) -> StoredResult:
        """A stored release by id; checked offline when the authority's key is given."""
        from sandbox.client.results import StoredResult, verify_result

        request = pb.GetResultRequest(result_id=result_id)
        stored = StoredResult.from_pb(self.connection.call(self._stub.GetResult, request))
        if authority_public_key is not None:
            verify_result(stored, authority_public_key)
        return stored

    @staticmethod
    def verify(
        answer: QueryAnswer, authority_public_key: Ed25519PublicKey, entry: bytes | None = None
    ) -> dict[str, Any]:
        """:func:`verify_answer`: offline, no call to the hub."""
        return verify_answer(answer, authority_public_key, entry)


__all__ = [
    "Account",
    "Budget",
    "Cell",
    "ClientError",
    "ColumnInfo",
    "DatasetInfo",
    "FirmClient",
    "MockData",
    "QueryAnswer",
    "Scalar",
    "release_bytes",
    "scalar",
    "verify_answer",
]
