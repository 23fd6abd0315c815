from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_QUERY: _ClassVar[Action]
    ACTION_TRAIN: _ClassVar[Action]

class ColumnRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_RULE_UNSPECIFIED: _ClassVar[ColumnRule]
    COLUMN_RULE_NEVER: _ClassVar[ColumnRule]
    COLUMN_RULE_FILTER_ONLY: _ClassVar[ColumnRule]
    COLUMN_RULE_GROUP_BY: _ClassVar[ColumnRule]
    COLUMN_RULE_AGGREGATE_ONLY: _ClassVar[ColumnRule]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_PENDING: _ClassVar[RequestState]
    REQUEST_STATE_REFUSED: _ClassVar[RequestState]
    REQUEST_STATE_GRANTED: _ClassVar[RequestState]
    REQUEST_STATE_WITHDRAWN: _ClassVar[RequestState]

class ReviewDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_DECISION_UNSPECIFIED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_PENDING: _ClassVar[ReviewDecision]
    REVIEW_DECISION_APPROVED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_REFUSED: _ClassVar[ReviewDecision]
    REVIEW_DECISION_AMENDED: _ClassVar[ReviewDecision]
ACTION_UNSPECIFIED: Action
ACTION_QUERY: Action
ACTION_TRAIN: Action
COLUMN_RULE_UNSPECIFIED: ColumnRule
COLUMN_RULE_NEVER: ColumnRule
COLUMN_RULE_FILTER_ONLY: ColumnRule
COLUMN_RULE_GROUP_BY: ColumnRule
COLUMN_RULE_AGGREGATE_ONLY: ColumnRule
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_PENDING: RequestState
REQUEST_STATE_REFUSED: RequestState
REQUEST_STATE_GRANTED: RequestState
REQUEST_STATE_WITHDRAWN: RequestState
REVIEW_DECISION_UNSPECIFIED: ReviewDecision
REVIEW_DECISION_PENDING: ReviewDecision
REVIEW_DECISION_APPROVED: ReviewDecision
REVIEW_DECISION_REFUSED: ReviewDecision
REVIEW_DECISION_AMENDED: ReviewDecision

class Value(_message.Message):
    __slots__ = ("bool_value", "int_value", "float_value", "string_value", "date_value")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    DATE_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    date_value: str
    def __init__(self, bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., date_value: _Optional[str] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("low", "high")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class PrivacySpent(_message.Message):
    __slots__ = ("epsilon", "delta")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class SignedTreeHead(_message.Message):
    __slots__ = ("size", "root", "timestamp_ms", "key_id", "signature")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    size: int
    root: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes
    def __init__(self, size: _Optional[int] = ..., root: _Optional[bytes] = ..., timestamp_ms: _Optional[int] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Cosignature(_message.Message):
    __slots__ = ("witness", "witness_key_id", "authority_key_id", "size", "root", "head_timestamp_ms", "timestamp_ms", "signature")
    WITNESS_FIELD_NUMBER: _ClassVar[int]
    WITNESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    HEAD_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    witness: str
    witness_key_id: str
    authority_key_id: str
    size: int
    root: bytes
    head_timestamp_ms: int
    timestamp_ms: int
    signature: bytes
    def __init__(self, witness: _Optional[str] = ..., witness_key_id: _Optional[str] = ..., authority_key_id: _Optional[str] = ..., size: _Optional[int] = ..., root: _Optional[bytes] = ..., head_timestamp_ms: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class LogProof(_message.Message):
    __slots__ = ("index", "tree_size", "inclusion_proof", "tree_head", "entry")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    tree_head: SignedTreeHead
    entry: bytes
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ..., tree_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ..., entry: _Optional[bytes] = ...) -> None: ...

class Bounds(_message.Message):
    __slots__ = ("low", "high")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    low: Value
    high: Value
    def __init__(self, low: _Optional[_Union[Value, _Mapping]] = ..., high: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class ColumnMetadata(_message.Message):
    __slots__ = ("name", "type", "role", "bounds", "categories", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    role: str
    bounds: Bounds
    categories: _containers.RepeatedCompositeFieldContainer[Value]
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., role: _Optional[str] = ..., bounds: _Optional[_Union[Bounds, _Mapping]] = ..., categories: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class PrivacyUnit(_message.Message):
    __slots__ = ("id_column", "max_rows")
    ID_COLUMN_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    id_column: str
    max_rows: int
    def __init__(self, id_column: _Optional[str] = ..., max_rows: _Optional[int] = ...) -> None: ...

class DatasetMetadata(_message.Message):
    __slots__ = ("name", "title", "department", "city", "description", "classification", "privacy_unit", "row_bound", "max_delta", "out_of_bounds", "columns", "node")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_UNIT_FIELD_NUMBER: _ClassVar[int]
    ROW_BOUND_FIELD_NUMBER: _ClassVar[int]
    MAX_DELTA_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    title: str
    department: str
    city: str
    description: str
    classification: str
    privacy_unit: PrivacyUnit
    row_bound: int
    max_delta: float
    out_of_bounds: str
    columns: _containers.RepeatedCompositeFieldContainer[ColumnMetadata]
    node: str
    def __init__(self, name: _Optional[str] = ..., title: _Optional[str] = ..., department: _Optional[str] = ..., city: _Optional[str] = ..., description: _Optional[str] = ..., classification: _Optional[str] = ..., privacy_unit: _Optional[_Union[PrivacyUnit, _Mapping]] = ..., row_bound: _Optional[int] = ..., max_delta: _Optional[float] = ..., out_of_bounds: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[ColumnMetadata, _Mapping]]] = ..., node: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetMetadata]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetMetadata, _Mapping]]] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class DescribeDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetMetadata
    def __init__(self, dataset: _Optional[_Union[DatasetMetadata, _Mapping]] = ...) -> None: ...

class MockDataRequest(_message.Message):
    __slots__ = ("dataset", "count", "seed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    count: int
    seed: int
    def __init__(self, dataset: _Optional[str] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class MockColumn(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class MockDataResponse(_message.Message):
    __slots__ = ("dataset", "columns", "note")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    columns: _containers.RepeatedCompositeFieldContainer[MockColumn]
    note: str
    def __init__(self, dataset: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[MockColumn, _Mapping]]] = ..., note: _Optional[str] = ...) -> None: ...

class DatasetTerms(_message.Message):
    __slots__ = ("epsilon", "delta", "columns")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ColumnRule
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ColumnRule, str]] = ...) -> None: ...
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    columns: _containers.ScalarMap[str, ColumnRule]
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., columns: _Optional[_Mapping[str, ColumnRule]] = ...) -> None: ...

class AccessTerms(_message.Message):
    __slots__ = ("datasets", "purpose", "legal_basis", "actions", "epsilon_per_use", "min_group_size", "models", "valid_from_ms", "valid_until_ms")
    class DatasetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: DatasetTerms
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[DatasetTerms, _Mapping]] = ...) -> None: ...
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_PER_USE_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.MessageMap[str, DatasetTerms]
    purpose: str
    legal_basis: str
    actions: _containers.RepeatedScalarFieldContainer[Action]
    epsilon_per_use: float
    min_group_size: int
    models: _containers.RepeatedScalarFieldContainer[str]
    valid_from_ms: int
    valid_until_ms: int
    def __init__(self, datasets: _Optional[_Mapping[str, DatasetTerms]] = ..., purpose: _Optional[str] = ..., legal_basis: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[Action, str]]] = ..., epsilon_per_use: _Optional[float] = ..., min_group_size: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., valid_from_ms: _Optional[int] = ..., valid_until_ms: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("grant_id", "firm", "terms", "approved_by", "version", "revoked", "revoked_by", "revoked_reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    FIRM_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    firm: str
    terms: AccessTerms
    approved_by: str
    version: int
    revoked: bool
    revoked_by: str
    revoked_reason: str
    def __init__(self, grant_id: _Optional[str] = ..., firm: _Optional[str] = ..., terms: _Optional[_Union[AccessTerms, _Mapping]] = ..., approved_by: _Optional[str] = ..., version: _Optional[int] = ..., revoked: _Optional[bool] = ..., revoked_by: _Optional[str] = ..., revoked_reason: _Optional[str] = ...) -> None: ...

class DepartmentReview(_message.Message):
    __slots__ = ("department", "dataset", "decision", "reason", "reviewer", "decided_ms", "amended_terms", "log_index")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    DECIDED_MS_FIELD_NUMBER: _ClassVar[int]
    AMENDED_TERMS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    department: str
    dataset: str
    decision: ReviewDecision
    reason: str
    reviewer: str
    decided_ms: int
    amended_terms: DatasetTerms
    log_index: int
    def __init__(self, department: _Optional[str] = ..., dataset: _Optional[str] = ..., decision: _Optional[_Union[ReviewDecision, str]] = ..., reason: _Optional[str] = ..., reviewer: _Optional[str] = ..., decided_ms: _Optional[int] = ..., amended_terms: _Optional[_Union[DatasetTerms, _Mapping]] = ..., log_index: _Optional[int] = ...) -> None: ...

class AccessRequest(_message.Message):
    __slots__ = ("request_id", "firm", "terms", "state", "reviews", "grant", "submitted_ms", "log_index")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FIRM_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    firm: str
    terms: AccessTerms
    state: RequestState
    reviews: _containers.RepeatedCompositeFieldContainer[DepartmentReview]
    grant: Grant
    submitted_ms: int
    log_index: int
    def __init__(self, request_id: _Optional[str] = ..., firm: _Optional[str] = ..., terms: _Optional[_Union[AccessTerms, _Mapping]] = ..., state: _Optional[_Union[RequestState, str]] = ..., reviews: _Optional[_Iterable[_Union[DepartmentReview, _Mapping]]] = ..., grant: _Optional[_Union[Grant, _Mapping]] = ..., submitted_ms: _Optional[int] = ..., log_index: _Optional[int] = ...) -> None: ...

class RequestAccessRequest(_message.Message):
    __slots__ = ("terms",)
    TERMS_FIELD_NUMBER: _ClassVar[int]
    terms: AccessTerms
    def __init__(self, terms: _Optional[_Union[AccessTerms, _Mapping]] = ...) -> None: ...

class RequestAccessResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: AccessRequest
    def __init__(self, request: _Optional[_Union[AccessRequest, _Mapping]] = ...) -> None: ...

class ListAccessRequestsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAccessRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AccessRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AccessRequest, _Mapping]]] = ...) -> None: ...

class WithdrawRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class BudgetAccount(_message.Message):
    __slots__ = ("account", "grant_id", "dataset", "epsilon_cap", "delta_cap", "epsilon_spent", "delta_spent", "basic_epsilon", "rho", "pending", "committed", "refunded", "withheld")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    BASIC_EPSILON_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
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
    def __init__(self, account: _Optional[str] = ..., grant_id: _Optional[str] = ..., dataset: _Optional[str] = ..., epsilon_cap: _Optional[float] = ..., delta_cap: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., delta_spent: _Optional[float] = ..., basic_epsilon: _Optional[float] = ..., rho: _Optional[float] = ..., pending: _Optional[int] = ..., committed: _Optional[int] = ..., refunded: _Optional[int] = ..., withheld: _Optional[int] = ...) -> None: ...

class RemainingBudgetRequest(_message.Message):
    __slots__ = ("grant_id", "dataset")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    dataset: str
    def __init__(self, grant_id: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class RemainingBudgetResponse(_message.Message):
    __slots__ = ("epsilon", "delta", "grant", "dataset")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    grant: BudgetAccount
    dataset: BudgetAccount
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., grant: _Optional[_Union[BudgetAccount, _Mapping]] = ..., dataset: _Optional[_Union[BudgetAccount, _Mapping]] = ...) -> None: ...

class SubmitQueryRequest(_message.Message):
    __slots__ = ("sql", "purpose", "epsilon", "delta", "grant_id", "min_group_size")
    SQL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    sql: str
    purpose: str
    epsilon: float
    delta: float
    grant_id: str
    min_group_size: int
    def __init__(self, sql: _Optional[str] = ..., purpose: _Optional[str] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., grant_id: _Optional[str] = ..., min_group_size: _Optional[int] = ...) -> None: ...

class Mechanism(_message.Message):
    __slots__ = ("statistic", "mechanism", "scale", "epsilon")
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    statistic: str
    mechanism: str
    scale: float
    epsilon: float
    def __init__(self, statistic: _Optional[str] = ..., mechanism: _Optional[str] = ..., scale: _Optional[float] = ..., epsilon: _Optional[float] = ...) -> None: ...

class AggregateRelease(_message.Message):
    __slots__ = ("name", "kind", "column", "quantile", "epsilon", "mechanisms", "interval_note")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    column: str
    quantile: float
    epsilon: float
    mechanisms: _containers.RepeatedCompositeFieldContainer[Mechanism]
    interval_note: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., column: _Optional[str] = ..., quantile: _Optional[float] = ..., epsilon: _Optional[float] = ..., mechanisms: _Optional[_Iterable[_Union[Mechanism, _Mapping]]] = ..., interval_note: _Optional[str] = ...) -> None: ...

class ReleasedCell(_message.Message):
    __slots__ = ("value", "ci95")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CI95_FIELD_NUMBER: _ClassVar[int]
    value: Value
    ci95: Interval
    def __init__(self, value: _Optional[_Union[Value, _Mapping]] = ..., ci95: _Optional[_Union[Interval, _Mapping]] = ...) -> None: ...

class ReleasedGroup(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[ReleasedCell]
    def __init__(self, cells: _Optional[_Iterable[_Union[ReleasedCell, _Mapping]]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("dataset", "sql", "outputs", "group_by", "groups", "confidence", "epsilon_spent", "delta_spent", "aggregates", "extra_mechanisms", "selection_threshold", "suppressed_groups")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATES_FIELD_NUMBER: _ClassVar[int]
    EXTRA_MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    SELECTION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_GROUPS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    sql: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    group_by: _containers.RepeatedScalarFieldContainer[str]
    groups: _containers.RepeatedCompositeFieldContainer[ReleasedGroup]
    confidence: float
    epsilon_spent: float
    delta_spent: float
    aggregates: _containers.RepeatedCompositeFieldContainer[AggregateRelease]
    extra_mechanisms: _containers.RepeatedCompositeFieldContainer[Mechanism]
    selection_threshold: int
    suppressed_groups: int
    def __init__(self, dataset: _Optional[str] = ..., sql: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., group_by: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[_Union[ReleasedGroup, _Mapping]]] = ..., confidence: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., delta_spent: _Optional[float] = ..., aggregates: _Optional[_Iterable[_Union[AggregateRelease, _Mapping]]] = ..., extra_mechanisms: _Optional[_Iterable[_Union[Mechanism, _Mapping]]] = ..., selection_threshold: _Optional[int] = ..., suppressed_groups: _Optional[int] = ...) -> None: ...

class SubmitQueryResponse(_message.Message):
    __slots__ = ("result_id", "grant_id", "result", "release_digest", "log")
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    grant_id: str
    result: QueryResult
    release_digest: str
    log: LogProof
    def __init__(self, result_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., result: _Optional[_Union[QueryResult, _Mapping]] = ..., release_digest: _Optional[str] = ..., log: _Optional[_Union[LogProof, _Mapping]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("model", "model_params", "features", "categorical", "label", "nodes", "rounds", "local_epochs", "sample_rate", "batch_size", "learning_rate", "strategy", "proximal_mu", "server_learning_rate", "server_momentum", "dp", "target_epsilon", "target_delta", "noise_multiplier", "max_grad_norm", "accountant", "count_epsilon", "eval_epsilon", "client_dp", "client_noise_multiplier", "client_target_epsilon", "client_clipping_norm", "client_sample_rate", "client_delta", "min_nodes", "round_timeout_s", "seed", "positive", "classes", "loss_epsilon")
    class ModelParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CategoricalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PROXIMAL_MU_FIELD_NUMBER: _ClassVar[int]
    SERVER_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    TARGET_DELTA_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    COUNT_EPSILON_FIELD_NUMBER: _ClassVar[int]
    EVAL_EPSILON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_DP_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CLIPPING_NORM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_DELTA_FIELD_NUMBER: _ClassVar[int]
    MIN_NODES_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    LOSS_EPSILON_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_params: _containers.ScalarMap[str, int]
    features: _containers.RepeatedScalarFieldContainer[str]
    categorical: _containers.ScalarMap[str, int]
    label: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    rounds: int
    local_epochs: float
    sample_rate: float
    batch_size: int
    learning_rate: float
    strategy: str
    proximal_mu: float
    server_learning_rate: float
    server_momentum: float
    dp: bool
    target_epsilon: float
    target_delta: float
    noise_multiplier: float
    max_grad_norm: float
    accountant: str
    count_epsilon: float
    eval_epsilon: float
    client_dp: bool
    client_noise_multiplier: float
    client_target_epsilon: float
    client_clipping_norm: float
    client_sample_rate: float
    client_delta: float
    min_nodes: int
    round_timeout_s: float
    seed: int
    positive: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    loss_epsilon: float
    def __init__(self, model: _Optional[str] = ..., model_params: _Optional[_Mapping[str, int]] = ..., features: _Optional[_Iterable[str]] = ..., categorical: _Optional[_Mapping[str, int]] = ..., label: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., rounds: _Optional[int] = ..., local_epochs: _Optional[float] = ..., sample_rate: _Optional[float] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., strategy: _Optional[str] = ..., proximal_mu: _Optional[float] = ..., server_learning_rate: _Optional[float] = ..., server_momentum: _Optional[float] = ..., dp: _Optional[bool] = ..., target_epsilon: _Optional[float] = ..., target_delta: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., accountant: _Optional[str] = ..., count_epsilon: _Optional[float] = ..., eval_epsilon: _Optional[float] = ..., client_dp: _Optional[bool] = ..., client_noise_multiplier: _Optional[float] = ..., client_target_epsilon: _Optional[float] = ..., client_clipping_norm: _Optional[float] = ..., client_sample_rate: _Optional[float] = ..., client_delta: _Optional[float] = ..., min_nodes: _Optional[int] = ..., round_timeout_s: _Optional[float] = ..., seed: _Optional[int] = ..., positive: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., loss_epsilon: _Optional[float] = ...) -> None: ...

class SubmitTrainingJobRequest(_message.Message):
    __slots__ = ("spec", "grant_id", "purpose")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    spec: JobSpec
    grant_id: str
    purpose: str
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., grant_id: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class SubmitTrainingJobResponse(_message.Message):
    __slots__ = ("job_id", "grant_id", "config_hash", "reserved", "log_index")
    class ReservedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PrivacySpent
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PrivacySpent, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    grant_id: str
    config_hash: str
    reserved: _containers.MessageMap[str, PrivacySpent]
    log_index: int
    def __init__(self, job_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., config_hash: _Optional[str] = ..., reserved: _Optional[_Mapping[str, PrivacySpent]] = ..., log_index: _Optional[int] = ...) -> None: ...

class FollowJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RoundMetrics(_message.Message):
    __slots__ = ("round", "nodes", "failed", "wall_s", "max_compute_s", "sum_compute_s", "overhead_s", "mean_update_norm", "dp_loss", "epsilon_spent", "rounds")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    SUM_COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_S_FIELD_NUMBER: _ClassVar[int]
    MEAN_UPDATE_NORM_FIELD_NUMBER: _ClassVar[int]
    DP_LOSS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    round: int
    nodes: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    wall_s: float
    max_compute_s: float
    sum_compute_s: float
    overhead_s: float
    mean_update_norm: float
    dp_loss: float
    epsilon_spent: float
    rounds: int
    def __init__(self, round: _Optional[int] = ..., nodes: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ..., wall_s: _Optional[float] = ..., max_compute_s: _Optional[float] = ..., sum_compute_s: _Optional[float] = ..., overhead_s: _Optional[float] = ..., mean_update_norm: _Optional[float] = ..., dp_loss: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., rounds: _Optional[int] = ...) -> None: ...

class NodeFailure(_message.Message):
    __slots__ = ("node", "stage", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    stage: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeCard(_message.Message):
    __slots__ = ("dataset", "dp_rows", "epsilon_spent", "delta_spent", "rounds_participated", "dp_test_accuracy", "dp_test_auc", "dp_positive_share")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DP_ROWS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PARTICIPATED_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_AUC_FIELD_NUMBER: _ClassVar[int]
    DP_POSITIVE_SHARE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    dp_rows: int
    epsilon_spent: float
    delta_spent: float
    rounds_participated: int
    dp_test_accuracy: float
    dp_test_auc: float
    dp_positive_share: float
    def __init__(self, dataset: _Optional[str] = ..., dp_rows: _Optional[int] = ..., epsilon_spent: _Optional[float] = ..., delta_spent: _Optional[float] = ..., rounds_participated: _Optional[int] = ..., dp_test_accuracy: _Optional[float] = ..., dp_test_auc: _Optional[float] = ..., dp_positive_share: _Optional[float] = ...) -> None: ...

class ClientLevelCard(_message.Message):
    __slots__ = ("epsilon_spent", "delta", "noise_multiplier", "clipping_norm", "client_sample_rate", "rounds_released")
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    CLIPPING_NORM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    epsilon_spent: float
    delta: float
    noise_multiplier: float
    clipping_norm: float
    client_sample_rate: float
    rounds_released: int
    def __init__(self, epsilon_spent: _Optional[float] = ..., delta: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., clipping_norm: _Optional[float] = ..., client_sample_rate: _Optional[float] = ..., rounds_released: _Optional[int] = ...) -> None: ...

class ModelCard(_message.Message):
    __slots__ = ("model", "model_params", "features", "label", "strategy", "rounds", "differential_privacy", "privacy_unit", "accountant", "max_grad_norm", "config_hash", "nodes", "dp_test_accuracy", "failures", "client_level", "randomness", "dp_test_auc", "dp_majority_baseline", "dp_positive_share", "settings", "warnings", "classes", "dp_class_shares", "loss_epsilon", "dp_test_accuracy_margin", "dp_majority_baseline_margin", "dp_test_auc_margin")
    class ModelParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RandomnessEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class DpClassSharesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_PARAMS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENTIAL_PRIVACY_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_UNIT_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RANDOMNESS_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_AUC_FIELD_NUMBER: _ClassVar[int]
    DP_MAJORITY_BASELINE_FIELD_NUMBER: _ClassVar[int]
    DP_POSITIVE_SHARE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    DP_CLASS_SHARES_FIELD_NUMBER: _ClassVar[int]
    LOSS_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_ACCURACY_MARGIN_FIELD_NUMBER: _ClassVar[int]
    DP_MAJORITY_BASELINE_MARGIN_FIELD_NUMBER: _ClassVar[int]
    DP_TEST_AUC_MARGIN_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_params: _containers.ScalarMap[str, int]
    features: _containers.RepeatedScalarFieldContainer[str]
    label: str
    strategy: str
    rounds: int
    differential_privacy: bool
    privacy_unit: str
    accountant: str
    max_grad_norm: float
    config_hash: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCard]
    dp_test_accuracy: float
    failures: _containers.RepeatedScalarFieldContainer[str]
    client_level: ClientLevelCard
    randomness: _containers.ScalarMap[str, str]
    dp_test_auc: float
    dp_majority_baseline: float
    dp_positive_share: float
    settings: _containers.ScalarMap[str, str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    classes: _containers.RepeatedScalarFieldContainer[str]
    dp_class_shares: _containers.ScalarMap[str, float]
    loss_epsilon: float
    dp_test_accuracy_margin: float
    dp_majority_baseline_margin: float
    dp_test_auc_margin: float
    def __init__(self, model: _Optional[str] = ..., model_params: _Optional[_Mapping[str, int]] = ..., features: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., strategy: _Optional[str] = ..., rounds: _Optional[int] = ..., differential_privacy: _Optional[bool] = ..., privacy_unit: _Optional[str] = ..., accountant: _Optional[str] = ..., max_grad_norm: _Optional[float] = ..., config_hash: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeCard, _Mapping]]] = ..., dp_test_accuracy: _Optional[float] = ..., failures: _Optional[_Iterable[str]] = ..., client_level: _Optional[_Union[ClientLevelCard, _Mapping]] = ..., randomness: _Optional[_Mapping[str, str]] = ..., dp_test_auc: _Optional[float] = ..., dp_majority_baseline: _Optional[float] = ..., dp_positive_share: _Optional[float] = ..., settings: _Optional[_Mapping[str, str]] = ..., warnings: _Optional[_Iterable[str]] = ..., classes: _Optional[_Iterable[str]] = ..., dp_class_shares: _Optional[_Mapping[str, float]] = ..., loss_epsilon: _Optional[float] = ..., dp_test_accuracy_margin: _Optional[float] = ..., dp_majority_baseline_margin: _Optional[float] = ..., dp_test_auc_margin: _Optional[float] = ...) -> None: ...

class JobFinished(_message.Message):
    __slots__ = ("status", "abort_reason", "model_card", "spent", "result_id", "log")
    class SpentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PrivacySpent
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PrivacySpent, _Mapping]] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ABORT_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_CARD_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    status: str
    abort_reason: str
    model_card: ModelCard
    spent: _containers.MessageMap[str, PrivacySpent]
    result_id: str
    log: LogProof
    def __init__(self, status: _Optional[str] = ..., abort_reason: _Optional[str] = ..., model_card: _Optional[_Union[ModelCard, _Mapping]] = ..., spent: _Optional[_Mapping[str, PrivacySpent]] = ..., result_id: _Optional[str] = ..., log: _Optional[_Union[LogProof, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "timestamp_ms", "accepted", "round", "failure", "finished")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    timestamp_ms: int
    accepted: str
    round: RoundMetrics
    failure: NodeFailure
    finished: JobFinished
    def __init__(self, job_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., accepted: _Optional[str] = ..., round: _Optional[_Union[RoundMetrics, _Mapping]] = ..., failure: _Optional[_Union[NodeFailure, _Mapping]] = ..., finished: _Optional[_Union[JobFinished, _Mapping]] = ...) -> None: ...

class TrainingResult(_message.Message):
    __slots__ = ("job_id", "status", "model_card", "spent", "weights_format", "model_weights")
    class SpentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PrivacySpent
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PrivacySpent, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_CARD_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODEL_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: str
    model_card: ModelCard
    spent: _containers.MessageMap[str, PrivacySpent]
    weights_format: str
    model_weights: bytes
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[str] = ..., model_card: _Optional[_Union[ModelCard, _Mapping]] = ..., spent: _Optional[_Mapping[str, PrivacySpent]] = ..., weights_format: _Optional[str] = ..., model_weights: _Optional[bytes] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("result_id",)
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    def __init__(self, result_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("job_id", "grant_id", "status", "datasets", "rounds", "rounds_done", "submitted_ms", "result_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    grant_id: str
    status: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    rounds: int
    rounds_done: int
    submitted_ms: int
    result_id: str
    def __init__(self, job_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., status: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., rounds: _Optional[int] = ..., rounds_done: _Optional[int] = ..., submitted_ms: _Optional[int] = ..., result_id: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSummary]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ...) -> None: ...

class GetResultResponse(_message.Message):
    __slots__ = ("result_id", "grant_id", "query", "training", "release_digest", "log")
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    RELEASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    grant_id: str
    query: QueryResult
    training: TrainingResult
    release_digest: str
    log: LogProof
    def __init__(self, result_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., query: _Optional[_Union[QueryResult, _Mapping]] = ..., training: _Optional[_Union[TrainingResult, _Mapping]] = ..., release_digest: _Optional[str] = ..., log: _Optional[_Union[LogProof, _Mapping]] = ...) -> None: ...

class RegisterDatasetRequest(_message.Message):
    __slots__ = ("manifest_yaml", "node", "epsilon_cap", "delta_cap", "node_address")
    MANIFEST_YAML_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    NODE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    manifest_yaml: str
    node: str
    epsilon_cap: float
    delta_cap: float
    node_address: str
    def __init__(self, manifest_yaml: _Optional[str] = ..., node: _Optional[str] = ..., epsilon_cap: _Optional[float] = ..., delta_cap: _Optional[float] = ..., node_address: _Optional[str] = ...) -> None: ...

class RegisterDatasetResponse(_message.Message):
    __slots__ = ("dataset", "log_index")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetMetadata
    log_index: int
    def __init__(self, dataset: _Optional[_Union[DatasetMetadata, _Mapping]] = ..., log_index: _Optional[int] = ...) -> None: ...

class ListPendingRequestsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPendingRequestsResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AccessRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AccessRequest, _Mapping]]] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("request_id", "dataset", "note")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    dataset: str
    note: str
    def __init__(self, request_id: _Optional[str] = ..., dataset: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class RefuseRequest(_message.Message):
    __slots__ = ("request_id", "dataset", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    dataset: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., dataset: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AmendRequest(_message.Message):
    __slots__ = ("request_id", "dataset", "terms", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    dataset: str
    terms: DatasetTerms
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., dataset: _Optional[str] = ..., terms: _Optional[_Union[DatasetTerms, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReviewResponse(_message.Message):
    __slots__ = ("request", "log_index")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    request: AccessRequest
    log_index: int
    def __init__(self, request: _Optional[_Union[AccessRequest, _Mapping]] = ..., log_index: _Optional[int] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("grant_id", "reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    reason: str
    def __init__(self, grant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeResponse(_message.Message):
    __slots__ = ("grant", "log_index")
    GRANT_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    log_index: int
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ..., log_index: _Optional[int] = ...) -> None: ...

class BudgetsRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class BudgetsResponse(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[BudgetAccount]
    def __init__(self, accounts: _Optional[_Iterable[_Union[BudgetAccount, _Mapping]]] = ...) -> None: ...

class SignedInstruction(_message.Message):
    __slots__ = ("instruction", "signature", "key_id")
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    instruction: bytes
    signature: bytes
    key_id: str
    def __init__(self, instruction: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("instruction",)
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    instruction: SignedInstruction
    def __init__(self, instruction: _Optional[_Union[SignedInstruction, _Mapping]] = ...) -> None: ...

class TrainingPlanAccepted(_message.Message):
    __slots__ = ("config_hash", "dataset")
    CONFIG_HASH_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    config_hash: str
    dataset: str
    def __init__(self, config_hash: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class NotReleased(_message.Message):
    __slots__ = ("code", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: str
    reason: str
    def __init__(self, code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("instruction_digest", "query_result", "training_plan", "not_released", "spent", "release_digest")
    INSTRUCTION_DIGEST_FIELD_NUMBER: _ClassVar[int]
    QUERY_RESULT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PLAN_FIELD_NUMBER: _ClassVar[int]
    NOT_RELEASED_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    instruction_digest: bytes
    query_result: QueryResult
    training_plan: TrainingPlanAccepted
    not_released: NotReleased
    spent: PrivacySpent
    release_digest: str
    def __init__(self, instruction_digest: _Optional[bytes] = ..., query_result: _Optional[_Union[QueryResult, _Mapping]] = ..., training_plan: _Optional[_Union[TrainingPlanAccepted, _Mapping]] = ..., not_released: _Optional[_Union[NotReleased, _Mapping]] = ..., spent: _Optional[_Union[PrivacySpent, _Mapping]] = ..., release_digest: _Optional[str] = ...) -> None: ...

class ReportMetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WitnessRequest(_message.Message):
    __slots__ = ("tree_head", "consistency_proof", "from_size")
    TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PROOF_FIELD_NUMBER: _ClassVar[int]
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    tree_head: SignedTreeHead
    consistency_proof: _containers.RepeatedScalarFieldContainer[bytes]
    from_size: int
    def __init__(self, tree_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ..., consistency_proof: _Optional[_Iterable[bytes]] = ..., from_size: _Optional[int] = ...) -> None: ...

class WitnessResponse(_message.Message):
    __slots__ = ("cosignature", "last_size")
    COSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    LAST_SIZE_FIELD_NUMBER: _ClassVar[int]
    cosignature: Cosignature
    last_size: int
    def __init__(self, cosignature: _Optional[_Union[Cosignature, _Mapping]] = ..., last_size: _Optional[int] = ...) -> None: ...

class NodeRevokeRequest(_message.Message):
    __slots__ = ("notice",)
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    notice: SignedInstruction
    def __init__(self, notice: _Optional[_Union[SignedInstruction, _Mapping]] = ...) -> None: ...

class NodeRevokeResponse(_message.Message):
    __slots__ = ("grant_id", "newly_revoked")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    NEWLY_REVOKED_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    newly_revoked: bool
    def __init__(self, grant_id: _Optional[str] = ..., newly_revoked: _Optional[bool] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "shape", "dtype", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class TaskValue(_message.Message):
    __slots__ = ("bool_value", "int_value", "float_value", "string_value")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    def __init__(self, bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ...) -> None: ...

class TaskValues(_message.Message):
    __slots__ = ("values",)
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TaskValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TaskValue, _Mapping]] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.MessageMap[str, TaskValue]
    def __init__(self, values: _Optional[_Mapping[str, TaskValue]] = ...) -> None: ...

class TaskTensors(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class FederatedTask(_message.Message):
    __slots__ = ("message_type", "group_id", "tensors", "configs", "metrics", "error")
    class TensorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TaskTensors
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TaskTensors, _Mapping]] = ...) -> None: ...
    class ConfigsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TaskValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TaskValues, _Mapping]] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TaskValues
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TaskValues, _Mapping]] = ...) -> None: ...
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    message_type: str
    group_id: str
    tensors: _containers.MessageMap[str, TaskTensors]
    configs: _containers.MessageMap[str, TaskValues]
    metrics: _containers.MessageMap[str, TaskValues]
    error: str
    def __init__(self, message_type: _Optional[str] = ..., group_id: _Optional[str] = ..., tensors: _Optional[_Mapping[str, TaskTensors]] = ..., configs: _Optional[_Mapping[str, TaskValues]] = ..., metrics: _Optional[_Mapping[str, TaskValues]] = ..., error: _Optional[str] = ...) -> None: ...

class RunTaskRequest(_message.Message):
    __slots__ = ("instruction", "task")
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    instruction: SignedInstruction
    task: FederatedTask
    def __init__(self, instruction: _Optional[_Union[SignedInstruction, _Mapping]] = ..., task: _Optional[_Union[FederatedTask, _Mapping]] = ...) -> None: ...

class RunTaskResponse(_message.Message):
    __slots__ = ("reply",)
    REPLY_FIELD_NUMBER: _ClassVar[int]
    reply: FederatedTask
    def __init__(self, reply: _Optional[_Union[FederatedTask, _Mapping]] = ...) -> None: ...

class NodeSpend(_message.Message):
    __slots__ = ("grant_id", "dataset", "epsilon_spent", "delta_spent", "epsilon_cap", "delta_cap")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DELTA_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_CAP_FIELD_NUMBER: _ClassVar[int]
    DELTA_CAP_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    dataset: str
    epsilon_spent: float
    delta_spent: float
    epsilon_cap: float
    delta_cap: float
    def __init__(self, grant_id: _Optional[str] = ..., dataset: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., delta_spent: _Optional[float] = ..., epsilon_cap: _Optional[float] = ..., delta_cap: _Optional[float] = ...) -> None: ...

class ReportMetadataResponse(_message.Message):
    __slots__ = ("node", "datasets", "authority_key_id", "spends", "last_witnessed_head", "protocol", "witness_key_pem", "witness_name", "flower_keys")
    class FlowerKeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SPENDS_FIELD_NUMBER: _ClassVar[int]
    LAST_WITNESSED_HEAD_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    WITNESS_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    WITNESS_NAME_FIELD_NUMBER: _ClassVar[int]
    FLOWER_KEYS_FIELD_NUMBER: _ClassVar[int]
    node: str
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetMetadata]
    authority_key_id: str
    spends: _containers.RepeatedCompositeFieldContainer[NodeSpend]
    last_witnessed_head: SignedTreeHead
    protocol: str
    witness_key_pem: str
    witness_name: str
    flower_keys: _containers.ScalarMap[str, str]
    def __init__(self, node: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[DatasetMetadata, _Mapping]]] = ..., authority_key_id: _Optional[str] = ..., spends: _Optional[_Iterable[_Union[NodeSpend, _Mapping]]] = ..., last_witnessed_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ..., protocol: _Optional[str] = ..., witness_key_pem: _Optional[str] = ..., witness_name: _Optional[str] = ..., flower_keys: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SignedTreeHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SignedTreeHeadResponse(_message.Message):
    __slots__ = ("tree_head", "cosignatures")
    TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    tree_head: SignedTreeHead
    cosignatures: _containers.RepeatedCompositeFieldContainer[Cosignature]
    def __init__(self, tree_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ..., cosignatures: _Optional[_Iterable[_Union[Cosignature, _Mapping]]] = ...) -> None: ...

class InclusionProofRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class InclusionProofResponse(_message.Message):
    __slots__ = ("index", "tree_size", "audit_path", "entry", "tree_head")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_PATH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    audit_path: _containers.RepeatedScalarFieldContainer[bytes]
    entry: bytes
    tree_head: SignedTreeHead
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., audit_path: _Optional[_Iterable[bytes]] = ..., entry: _Optional[bytes] = ..., tree_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ...) -> None: ...

class ConsistencyProofRequest(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: int
    second: int
    def __init__(self, first: _Optional[int] = ..., second: _Optional[int] = ...) -> None: ...

class ConsistencyProofResponse(_message.Message):
    __slots__ = ("first", "second", "proof", "tree_head")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    TREE_HEAD_FIELD_NUMBER: _ClassVar[int]
    first: int
    second: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    tree_head: SignedTreeHead
    def __init__(self, first: _Optional[int] = ..., second: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ..., tree_head: _Optional[_Union[SignedTreeHead, _Mapping]] = ...) -> None: ...

class EntriesRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("index", "entry")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    index: int
    entry: bytes
    def __init__(self, index: _Optional[int] = ..., entry: _Optional[bytes] = ...) -> None: ...

class EntriesResponse(_message.Message):
    __slots__ = ("entries", "next", "tree_size")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    next: int
    tree_size: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., next: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...
