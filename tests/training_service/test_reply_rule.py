"""A node's training reply may carry only its DP-SGD weights, numeric metrics and its name;
the hub refuses anything else before it reaches the job (so no text column, no extra tensor and
no free-form value can leave a node through a task)."""

from __future__ import annotations

import pytest

from sandbox.errors import TaskFormatError
from sandbox.federated_task import check_reply
from sandbox.protocol.v1 import sandbox_pb2 as pb


def _reply() -> pb.FederatedTask:
    task = pb.FederatedTask(message_type="train")
    task.tensors["arrays"].tensors.add(name="w", shape=[1], dtype="float32", data=b"\0\0\0\0")
    task.metrics["metrics"].values["steps"].int_value = 3
    task.metrics["metrics"].values["update-norm"].float_value = 0.5
    task.configs["node"].values["node-name"].string_value = "jinan"
    return task


def test_weights_numeric_metrics_and_the_name_pass() -> None:
    check_reply(_reply(), "jinan")


@pytest.mark.parametrize(
    "smuggle",
    [
        lambda t: t.metrics["metrics"].values["id"].__setattr__("string_value", "370100-E0"),
        lambda t: t.tensors["rows"].tensors.add(name="x", shape=[1], dtype="float32", data=b"1234"),
        lambda t: t.configs["node"].values["row"].__setattr__("string_value", "a,b,c"),
        lambda t: t.configs["extra"].values["v"].__setattr__("string_value", "x"),
        lambda t: t.metrics["other"].values["n"].__setattr__("int_value", 1),
    ],
    ids=["text-metric", "extra-tensor", "extra-config-key", "extra-config", "extra-metrics"],
)
def test_anything_else_is_refused(smuggle: object) -> None:
    task = _reply()
    smuggle(task)  # type: ignore[operator]
    with pytest.raises(TaskFormatError, match="may send back only"):
        check_reply(task, "jinan")


def test_an_error_reply_carries_no_content() -> None:
    task = _reply()
    task.error = "refused"
    with pytest.raises(TaskFormatError, match="carries content"):
        check_reply(task, "jinan")
    check_reply(pb.FederatedTask(message_type="train", error="refused"), "jinan")
