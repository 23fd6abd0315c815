# Typed stubs of sandbox_pb2_grpc.py, written by sandbox/protocol/generate.py. DO NOT EDIT!
# source: sandbox/protocol/v1/sandbox.proto
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from sandbox.protocol.v1 import sandbox_pb2

_Req = TypeVar("_Req", contravariant=True)
_Resp = TypeVar("_Resp", covariant=True)

class _UnaryCall(Protocol, Generic[_Req, _Resp]):
    def __call__(
        self,
        request: _Req,
        timeout: float | None = ...,
        metadata: Any = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> _Resp: ...
    def with_call(self, request: _Req, timeout: float | None = ..., metadata: Any = ...) -> Any: ...
    def future(self, request: _Req, timeout: float | None = ..., metadata: Any = ...) -> Any: ...

class _StreamCall(Protocol, Generic[_Req, _Resp]):
    def __call__(
        self,
        request: _Req,
        timeout: float | None = ...,
        metadata: Any = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Iterator[_Resp]: ...


class FirmServiceStub:
    def __init__(self, channel: Any) -> None: ...
    ListDatasets: _UnaryCall[sandbox_pb2.ListDatasetsRequest, sandbox_pb2.ListDatasetsResponse]
    DescribeDataset: _UnaryCall[sandbox_pb2.DescribeDatasetRequest, sandbox_pb2.DescribeDatasetResponse]
    MockData: _UnaryCall[sandbox_pb2.MockDataRequest, sandbox_pb2.MockDataResponse]
    RequestAccess: _UnaryCall[sandbox_pb2.RequestAccessRequest, sandbox_pb2.RequestAccessResponse]
    SubmitQuery: _UnaryCall[sandbox_pb2.SubmitQueryRequest, sandbox_pb2.SubmitQueryResponse]
    SubmitTrainingJob: _UnaryCall[sandbox_pb2.SubmitTrainingJobRequest, sandbox_pb2.SubmitTrainingJobResponse]
    FollowJob: _StreamCall[sandbox_pb2.FollowJobRequest, sandbox_pb2.JobEvent]
    RemainingBudget: _UnaryCall[sandbox_pb2.RemainingBudgetRequest, sandbox_pb2.RemainingBudgetResponse]
    GetResult: _UnaryCall[sandbox_pb2.GetResultRequest, sandbox_pb2.GetResultResponse]


class FirmServiceServicer:
    def ListDatasets(self, request: sandbox_pb2.ListDatasetsRequest, context: Any) -> sandbox_pb2.ListDatasetsResponse: ...
    def DescribeDataset(self, request: sandbox_pb2.DescribeDatasetRequest, context: Any) -> sandbox_pb2.DescribeDatasetResponse: ...
    def MockData(self, request: sandbox_pb2.MockDataRequest, context: Any) -> sandbox_pb2.MockDataResponse: ...
    def RequestAccess(self, request: sandbox_pb2.RequestAccessRequest, context: Any) -> sandbox_pb2.RequestAccessResponse: ...
    def SubmitQuery(self, request: sandbox_pb2.SubmitQueryRequest, context: Any) -> sandbox_pb2.SubmitQueryResponse: ...
    def SubmitTrainingJob(self, request: sandbox_pb2.SubmitTrainingJobRequest, context: Any) -> sandbox_pb2.SubmitTrainingJobResponse: ...
    def FollowJob(self, request: sandbox_pb2.FollowJobRequest, context: Any) -> Iterator[sandbox_pb2.JobEvent]: ...
    def RemainingBudget(self, request: sandbox_pb2.RemainingBudgetRequest, context: Any) -> sandbox_pb2.RemainingBudgetResponse: ...
    def GetResult(self, request: sandbox_pb2.GetResultRequest, context: Any) -> sandbox_pb2.GetResultResponse: ...


def add_FirmServiceServicer_to_server(servicer: FirmServiceServicer, server: Any) -> None: ...


class DepartmentServiceStub:
    def __init__(self, channel: Any) -> None: ...
    RegisterDataset: _UnaryCall[sandbox_pb2.RegisterDatasetRequest, sandbox_pb2.RegisterDatasetResponse]
    ListPendingRequests: _UnaryCall[sandbox_pb2.ListPendingRequestsRequest, sandbox_pb2.ListPendingRequestsResponse]
    Approve: _UnaryCall[sandbox_pb2.ApproveRequest, sandbox_pb2.ReviewResponse]
    Refuse: _UnaryCall[sandbox_pb2.RefuseRequest, sandbox_pb2.ReviewResponse]
    Amend: _UnaryCall[sandbox_pb2.AmendRequest, sandbox_pb2.ReviewResponse]
    Revoke: _UnaryCall[sandbox_pb2.RevokeRequest, sandbox_pb2.RevokeResponse]
    Budgets: _UnaryCall[sandbox_pb2.BudgetsRequest, sandbox_pb2.BudgetsResponse]


class DepartmentServiceServicer:
    def RegisterDataset(self, request: sandbox_pb2.RegisterDatasetRequest, context: Any) -> sandbox_pb2.RegisterDatasetResponse: ...
    def ListPendingRequests(self, request: sandbox_pb2.ListPendingRequestsRequest, context: Any) -> sandbox_pb2.ListPendingRequestsResponse: ...
    def Approve(self, request: sandbox_pb2.ApproveRequest, context: Any) -> sandbox_pb2.ReviewResponse: ...
    def Refuse(self, request: sandbox_pb2.RefuseRequest, context: Any) -> sandbox_pb2.ReviewResponse: ...
    def Amend(self, request: sandbox_pb2.AmendRequest, context: Any) -> sandbox_pb2.ReviewResponse: ...
    def Revoke(self, request: sandbox_pb2.RevokeRequest, context: Any) -> sandbox_pb2.RevokeResponse: ...
    def Budgets(self, request: sandbox_pb2.BudgetsRequest, context: Any) -> sandbox_pb2.BudgetsResponse: ...


def add_DepartmentServiceServicer_to_server(servicer: DepartmentServiceServicer, server: Any) -> None: ...


class NodeServiceStub:
    def __init__(self, channel: Any) -> None: ...
    Execute: _UnaryCall[sandbox_pb2.ExecuteRequest, sandbox_pb2.ExecuteResponse]
    ReportMetadata: _UnaryCall[sandbox_pb2.ReportMetadataRequest, sandbox_pb2.ReportMetadataResponse]


class NodeServiceServicer:
    def Execute(self, request: sandbox_pb2.ExecuteRequest, context: Any) -> sandbox_pb2.ExecuteResponse: ...
    def ReportMetadata(self, request: sandbox_pb2.ReportMetadataRequest, context: Any) -> sandbox_pb2.ReportMetadataResponse: ...


def add_NodeServiceServicer_to_server(servicer: NodeServiceServicer, server: Any) -> None: ...


class RegulatorServiceStub:
    def __init__(self, channel: Any) -> None: ...
    SignedTreeHead: _UnaryCall[sandbox_pb2.SignedTreeHeadRequest, sandbox_pb2.SignedTreeHeadResponse]
    InclusionProof: _UnaryCall[sandbox_pb2.InclusionProofRequest, sandbox_pb2.InclusionProofResponse]
    ConsistencyProof: _UnaryCall[sandbox_pb2.ConsistencyProofRequest, sandbox_pb2.ConsistencyProofResponse]
    Entries: _UnaryCall[sandbox_pb2.EntriesRequest, sandbox_pb2.EntriesResponse]


class RegulatorServiceServicer:
    def SignedTreeHead(self, request: sandbox_pb2.SignedTreeHeadRequest, context: Any) -> sandbox_pb2.SignedTreeHeadResponse: ...
    def InclusionProof(self, request: sandbox_pb2.InclusionProofRequest, context: Any) -> sandbox_pb2.InclusionProofResponse: ...
    def ConsistencyProof(self, request: sandbox_pb2.ConsistencyProofRequest, context: Any) -> sandbox_pb2.ConsistencyProofResponse: ...
    def Entries(self, request: sandbox_pb2.EntriesRequest, context: Any) -> sandbox_pb2.EntriesResponse: ...


def add_RegulatorServiceServicer_to_server(servicer: RegulatorServiceServicer, server: Any) -> None: ...
