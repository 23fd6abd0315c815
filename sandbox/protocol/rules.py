"""The no-row-data rule of the sandbox API, as a check over a protobuf file descriptor.

No message of the API may carry row-level data: only DP releases, public metadata, mock data
generated from public metadata, and governance records (grants, budgets, signatures, hashes,
log entries). The schema cannot see inside a string, so the rule fixes the shapes that could
carry rows and makes every exception explicit, with its reason, in this module:

* **R1 names.** No service, method, message, enum, enum value or field name has a row word as
  one of its parts (:data:`ROW_WORDS`; ``ReleasedCell`` has the parts ``released``, ``cell``),
  except the fields of :data:`ROW_WORD_FIELDS`.
* **R2 bytes.** A ``bytes`` field exists only where :data:`BYTES_FIELDS` gives its reason.
* **R3 cells.** The messages that hold data values (:data:`CONTAINED`: ``Value`` and the
  messages built from it) are used only by the fields listed there: a released cell only
  inside a ``QueryResult``, a mock column only inside a ``MockDataResponse``, a bound or
  category only inside a column's public metadata.
* **R4 no untyped containers.** The file imports no other .proto file (so no
  ``google.protobuf.Any``, ``Struct`` or ``ListValue`` that could hold a table).

:func:`row_data_violations` walks every method of every service, every message they reach and
every message the file defines, and returns one line per breach (empty when the rule holds).

>>> words("ReleasedCell"), words("row_bound"), words("CSVExport")
(['released', 'cell'], ['row', 'bound'], ['csv', 'export'])
>>> from sandbox.protocol.v1 import sandbox_pb2
>>> row_data_violations(sandbox_pb2.DESCRIPTOR)
[]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

# protobuf ships no type information (types-protobuf would add it): its names are Any here.
from google.protobuf.descriptor import (  # type: ignore[import-untyped,unused-ignore]
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
)

#: Name parts that mean row-level data (matched on whole parts, lowercase).
ROW_WORDS = frozenset(
    {
        "row",
        "rows",
        "record",
        "records",
        "raw",
        "tuple",
        "tuples",
        "microdata",
        "dataframe",
        "frame",
        "parquet",
        "csv",
        "arrow",
    }
)

#: Fields whose name has a row word but which hold no row data, with the reason.
ROW_WORD_FIELDS: Mapping[str, str] = {
    "sandbox.v1.DatasetMetadata.row_bound": "public metadata: an upper bound on the row count",
    "sandbox.v1.PrivacyUnit.max_rows": "public metadata: how many rows one person may have",
    "sandbox.v1.NodeCard.dp_rows": "a DP count of the rows a node trained on",
}

#: The only ``bytes`` fields, with what they hold.
BYTES_FIELDS: Mapping[str, str] = {
    "sandbox.v1.SignedTreeHead.root": "a 32-byte Merkle root",
    "sandbox.v1.SignedTreeHead.signature": "an Ed25519 signature",
    "sandbox.v1.LogProof.inclusion_proof": "32-byte Merkle hashes",
    "sandbox.v1.LogProof.entry": "the release entry's canonical JSON (digests, no rows)",
    "sandbox.v1.InclusionProofResponse.audit_path": "32-byte Merkle hashes",
    "sandbox.v1.InclusionProofResponse.entry": "a log entry's canonical JSON (digests, no rows)",
    "sandbox.v1.ConsistencyProofResponse.proof": "32-byte Merkle hashes",
    "sandbox.v1.LogEntry.entry": "a log entry's canonical JSON (digests, no rows)",
    "sandbox.v1.SignedInstruction.instruction": "the authority's canonical instruction bytes",
    "sandbox.v1.SignedInstruction.signature": "an Ed25519 signature",
    "sandbox.v1.ExecuteResponse.instruction_digest": "a SHA-256 digest",
    "sandbox.v1.TrainingResult.model_weights": "DP-SGD-trained weights (a DP release)",
    "sandbox.v1.Cosignature.root": "a 32-byte Merkle root",
    "sandbox.v1.Cosignature.signature": "an Ed25519 signature",
    "sandbox.v1.WitnessRequest.consistency_proof": "32-byte Merkle hashes",
    "sandbox.v1.Tensor.data": (
        "model weights of a federated task: the global model (an aggregate of DP-SGD updates) "
        "or a node's DP-SGD-trained update"
    ),
}

#: Messages that hold data values, and the only fields that may use each of them.
CONTAINED: Mapping[str, frozenset[str]] = {
    "sandbox.v1.Value": frozenset(
        {
            "sandbox.v1.ReleasedCell.value",  # a DP release or a released group key
            "sandbox.v1.Bounds.low",  # public metadata
            "sandbox.v1.Bounds.high",
            "sandbox.v1.ColumnMetadata.categories",
            "sandbox.v1.MockColumn.values",  # synthetic, from public metadata only
        }
    ),
    "sandbox.v1.ReleasedCell": frozenset({"sandbox.v1.ReleasedGroup.cells"}),
    "sandbox.v1.ReleasedGroup": frozenset({"sandbox.v1.QueryResult.groups"}),
    "sandbox.v1.MockColumn": frozenset({"sandbox.v1.MockDataResponse.columns"}),
    "sandbox.v1.Bounds": frozenset({"sandbox.v1.ColumnMetadata.bounds"}),
    "sandbox.v1.Tensor": frozenset({"sandbox.v1.TaskTensors.tensors"}),  # model weights only
    "sandbox.v1.TaskTensors": frozenset({"sandbox.v1.FederatedTask.TensorsEntry.value"}),
}


def words(name: str) -> list[str]:
    """The lowercase parts of a snake_case, UPPER_CASE or CamelCase name."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return [part for part in spaced.lower().split("_") if part]


def _row_word(name: str) -> str | None:
    return next((w for w in words(name) if w in ROW_WORDS), None)


def _nested(message: Descriptor) -> Iterator[Descriptor]:
    yield message
    for inner in message.nested_types:
        yield from _nested(inner)


def reachable_messages(file: FileDescriptor) -> dict[str, Descriptor]:
    """Every message a method of a service of ``file`` takes or returns, directly or inside."""
    seen: dict[str, Descriptor] = {}
    todo = [
        message
        for service in file.services_by_name.values()
        for method in service.methods
        for message in (method.input_type, method.output_type)
    ]
    while todo:
        message = todo.pop()
        if message.full_name in seen:
            continue
        seen[message.full_name] = message
        todo.extend(
            field.message_type for field in message.fields if field.message_type is not None
        )
    return seen


def _field_violations(field: FieldDescriptor) -> Iterator[str]:
    name = field.full_name
    word = _row_word(field.name)
    if word and name not in ROW_WORD_FIELDS:
        yield f"R1 field {name}: the name part {word!r} means row data"
    if field.type == FieldDescriptor.TYPE_BYTES and name not in BYTES_FIELDS:
        yield f"R2 field {name}: bytes fields are only allowed where BYTES_FIELDS says why"
    if field.message_type is not None:
        allowed = CONTAINED.get(field.message_type.full_name)
        if allowed is not None and name not in allowed:
            yield (
                f"R3 field {name}: {field.message_type.full_name} holds data values and may "
                f"only be used by {sorted(allowed)}"
            )


def row_data_violations(file: FileDescriptor) -> list[str]:
    """One line per breach of the no-row-data rule in ``file`` (empty when it holds)."""
    found: list[str] = []
    if file.dependencies:
        names = [dep.name for dep in file.dependencies]
        found.append(f"R4 file {file.name}: imports {names}; the API imports nothing")
    for service in file.services_by_name.values():
        for named in (service, *service.methods):
            if word := _row_word(named.name):
                found.append(f"R1 {named.full_name}: the name part {word!r} means row data")
    messages = dict(reachable_messages(file))
    for top in file.message_types_by_name.values():
        messages.update((m.full_name, m) for m in _nested(top))
    enums: list[EnumDescriptor] = list(file.enum_types_by_name.values())
    for message in messages.values():
        enums.extend(message.enum_types)
        if word := _row_word(message.name):
            found.append(f"R1 message {message.full_name}: the name part {word!r} means row data")
        for field in message.fields:
            found.extend(_field_violations(field))
    for enum in enums:
        for named in (enum, *enum.values):
            if word := _row_word(named.name):
                found.append(f"R1 enum {named.full_name}: the name part {word!r} means row data")
    return sorted(set(found))
