"""Flower message content <-> ``sandbox.v1.FederatedTask``: typed, and nothing else.

A federated-training message crosses the wire between the hub and a department node as a
:class:`~sandbox.protocol.v1.sandbox_pb2.FederatedTask`:

* ``tensors``: each Flower ``ArrayRecord`` as ``TaskTensors``, one ``Tensor`` (name, shape,
  dtype ``float32``/``float64``/``int64``, little-endian C-order bytes) per array, in order;
* ``configs`` and ``metrics``: each ``ConfigRecord`` / ``MetricRecord`` as ``TaskValues`` of
  scalars (bool, int, float, string; metrics numeric only).

Anything else (lists, bytes, other record types, other dtypes, malformed shapes) is refused
with :class:`~sandbox.errors.TaskFormatError`: there is no untyped payload.

What a node may send back is narrower still (:func:`check_reply`): the DP-SGD-trained weights
(``arrays``), numeric ``metrics`` and the node's name (``node``: ``{"node-name": ...}``).

>>> import numpy as np
>>> from flwr.app import ArrayRecord, ConfigRecord, RecordDict
>>> content = RecordDict({"arrays": ArrayRecord(numpy_ndarrays=[np.ones((2, 1), "float32")]),
...                       "config": ConfigRecord({"server-round": 1})})
>>> task = task_from_content(content, "train", "1")
>>> task.tensors["arrays"].tensors[0].shape, task.configs["config"].values["server-round"].int_value
([2, 1], 1)
>>> back = content_from_task(task)
>>> back["arrays"].to_numpy_ndarrays()[0].tolist(), back["config"]["server-round"]
([[1.0], [1.0]], 1)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from sandbox.errors import TaskFormatError
from sandbox.protocol.v1 import sandbox_pb2 as pb

if TYPE_CHECKING:
    from flwr.app import RecordDict

#: The dtypes a tensor may have on the wire (little-endian).
DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8"}
#: Flower message types a task may carry.
MESSAGE_TYPES = ("query", "train", "evaluate")
#: What a node's reply may hold: its weights, its metrics and its name.
REPLY_TENSORS = frozenset({"arrays"})
REPLY_METRICS = frozenset({"metrics"})
REPLY_CONFIGS = {"node": frozenset({"node-name"})}
#: Most elements one task may carry in all its tensors (a guard against oversized messages).
MAX_ELEMENTS = 50_000_000


def tensor_pb(name: str, array: np.ndarray[Any, Any]) -> pb.Tensor:
    """One named array as a ``Tensor`` (little-endian, C order)."""
    dtype = np.dtype(array.dtype).name
    if dtype not in DTYPES:
        raise TaskFormatError(
            f"tensor {name!r} has dtype {dtype}; only {', '.join(DTYPES)} cross the wire"
        )
    data = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
    return pb.Tensor(name=name, shape=list(array.shape), dtype=dtype, data=data)


def tensor_array(tensor: pb.Tensor) -> np.ndarray[Any, Any]:
    """A ``Tensor`` as a numpy array in native byte order, its size checked against its shape."""
    if tensor.dtype not in DTYPES:
        raise TaskFormatError(
            f"tensor {tensor.name!r} has dtype {tensor.dtype!r}; only {', '.join(DTYPES)} are "
            "accepted"
        )
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise TaskFormatError(f"tensor {tensor.name!r} has an invalid shape {list(shape)}")
    wire = np.dtype(DTYPES[tensor.dtype])
    if len(tensor.data) != math.prod(shape) * wire.itemsize:
        raise TaskFormatError(
            f"tensor {tensor.name!r}: {len(tensor.data)} bytes do not fit shape {list(shape)} "
            f"of {tensor.dtype}"
        )
    array = np.frombuffer(tensor.data, dtype=wire).reshape(shape)
    return array.astype(np.dtype(tensor.dtype), copy=True)


def value_pb(key: str, value: object, *, numeric: bool = False) -> pb.TaskValue:
    """One scalar setting (or, with ``numeric``, one metric) as a ``TaskValue``."""
    if isinstance(value, bool) and not numeric:
        return pb.TaskValue(bool_value=value)
    if isinstance(value, int) and not isinstance(value, bool):
        return pb.TaskValue(int_value=value)
    if isinstance(value, float):
        return pb.TaskValue(float_value=value)
    if isinstance(value, str) and not numeric:
        return pb.TaskValue(string_value=value)
    kind = "numbers" if numeric else "booleans, integers, floats or strings"
    raise TaskFormatError(f"{key!r} is a {type(value).__name__}; task values are {kind} only")


def value_of(value: pb.TaskValue) -> bool | int | float | str:
    """The Python scalar a ``TaskValue`` holds (refuses an empty one)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise TaskFormatError("a task value holds nothing; every value must be typed")
    result: bool | int | float | str = getattr(value, kind)
    return result


def task_from_content(content: RecordDict, message_type: str, group_id: str) -> pb.FederatedTask:
    """A Flower message's content as a ``FederatedTask`` (refuses any untyped record)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    if message_type not in MESSAGE_TYPES:
        raise TaskFormatError(f"message type {message_type!r} is not one of {MESSAGE_TYPES}")
    task = pb.FederatedTask(message_type=message_type, group_id=group_id)
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            arrays = [tensor_pb(k, v.numpy()) for k, v in record.items()]
            task.tensors[name].tensors.extend(arrays)
        elif isinstance(record, MetricRecord):
            metrics = task.metrics[name].values
            for key, number in record.items():
                metrics[key].CopyFrom(value_pb(key, number, numeric=True))
        elif isinstance(record, ConfigRecord):
            settings = task.configs[name].values
            for key, setting in record.items():
                settings[key].CopyFrom(value_pb(key, setting))
        else:
            raise TaskFormatError(f"record {name!r} is a {type(record).__name__}; not sent")
    return task


def content_from_task(task: pb.FederatedTask) -> RecordDict:
    """A ``FederatedTask``'s typed content as a Flower ``RecordDict``."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

    names = [*task.tensors, *task.configs, *task.metrics]
    if len(set(names)) != len(names):
        raise TaskFormatError("a task names one record twice; each record name is used once")
    if sum(math.prod(t.shape) for g in task.tensors.values() for t in g.tensors) > MAX_ELEMENTS:
        raise TaskFormatError("the task's tensors are too large")
    content = RecordDict()
    for name, group in task.tensors.items():
        arrays: OrderedDict[str, Array] = OrderedDict()
        for tensor in group.tensors:
            if tensor.name in arrays:
                raise TaskFormatError(f"tensor {tensor.name!r} appears twice in {name!r}")
            arrays[tensor.name] = Array(tensor_array(tensor))
        content[name] = ArrayRecord(array_dict=arrays)
    for name, values in task.configs.items():
        content[name] = ConfigRecord({k: value_of(v) for k, v in values.values.items()})
    for name, values in task.metrics.items():
        metrics: dict[str, int | float] = {}
        for key, value in values.values.items():
            number = value_of(value)
            if isinstance(number, bool | str):
                raise TaskFormatError(f"metric {key!r} is not a number")
            metrics[key] = number
        content[name] = MetricRecord(metrics)  # type: ignore[arg-type]
    return content


def check_reply(task: pb.FederatedTask, node: str) -> None:
    """Refuse a node's reply that holds anything but its weights, numeric metrics and its name.

    A reply's ``error`` (the node refused or failed the task) carries no content at all.
    """
    if task.error:
        if task.tensors or task.configs or task.metrics:
            raise TaskFormatError(f"node {node}'s error reply carries content; it is discarded")
        return
    extra = [n for n in task.tensors if n not in REPLY_TENSORS]
    extra += [n for n in task.metrics if n not in REPLY_METRICS]
    for name, values in task.configs.items():
        allowed = REPLY_CONFIGS.get(name)
        kinds = {v.WhichOneof("kind") for v in values.values.values()}
        if allowed is None or set(values.values) - allowed or kinds - {"string_value"}:
            extra.append(name)
    for values in task.metrics.values():
        if any(
            v.WhichOneof("kind") not in ("int_value", "float_value") for v in values.values.values()
        ):
            extra.append("metrics")
    if extra:
        raise TaskFormatError(
            f"node {node} replied with {sorted(set(extra))}; a node may send back only its "
            "DP-SGD weights ('arrays'), numeric 'metrics' and its name ('node')"
        )


def ensure_task_identity() -> None:
    """Give Flower's process-wide task identity a value if nothing set one yet (a Flower
    ``Message`` cannot be built without it; the hub and nodes build messages outside a Flower
    run). The values name the one run of this process; they are not used for any check."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    try:
        TaskIdentity.run_id  # noqa: B018 - raises when unset
    except RuntimeError:
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
