"""The node's long-lived ClientApp executor: a SuperNode in process isolation
(``flower-supernode --isolation process``) hands it every ClientApp task.

With Flower's default (``--isolation subprocess``), the SuperNode's SuperExec starts a new
``flwr-clientapp`` process for every message. That process installs the run's FAB and imports
the app's code from it: Python, Flower, torch, Opacus and Polars start again for every round of
every node (seconds each, more with several nodes on one machine), and the code that runs on
the department's machine is whatever FAB the run carries.

This executor replaces both. It is one process, started beside each SuperNode by
:meth:`sandbox.deployment.processes.Federation.start_supernode`, that

* acquires the SuperNode's ClientApp tasks over its Runtime API (``AcquireTask``, guarded by
  the SuperExec secret only it and the SuperNode hold);
* refuses a run whose FAB is not the sandbox's (by FAB id) with an error reply, and never
  installs or imports code from a FAB: it runs the installed
  :data:`sandbox.deployment.apps.client_app`, whose every message is checked against the
  authority's signed, node-accepted instruction before a row is read;
* keeps Python, torch and the node's code loaded between messages.

The per-message protocol is the one ``flwr-clientapp`` speaks (pull the task input and the
message, push the reply and the task output, heartbeats while it runs), through Flower's own
Runtime API client.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["SANDBOX_FAB_ID", "main", "serve"]

log = logging.getLogger("sandbox.deployment.executor")

#: The FAB id (``publisher/name``) of the sandbox's training app (``sandbox/deployment/fab``).
SANDBOX_FAB_ID = "gov-data-sandbox/sandbox-training"
#: How often the executor asks the SuperNode for a task while a job is running (within
#: :data:`BUSY_WINDOW_S` of its last task); idle, the interval grows by half each time up to
#: :data:`IDLE_POLL_INTERVAL_S`, so an idle node costs about one request a second.
TASK_POLL_INTERVAL_S = 0.02
BUSY_WINDOW_S = 30.0
IDLE_POLL_INTERVAL_S = 1.0
_ACQUIRE_METHOD = "/flwr.proto.Runtime/AcquireTask"


def _acquire_client(runtime_address: str, secret: bytes) -> Any:
    from flwr.supercore.interceptors import (
        RuntimeVersionHttpInterceptor,
        SuperExecAuthHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    return RuntimeHttpClient.from_server_address(
        server_address=runtime_address,
        insecure=True,  # loopback only: the SuperNode's Runtime API listens on 127.0.0.1
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="SuperExec"),
            SuperExecAuthHttpInterceptor(
                master_secret=secret, protected_methods=frozenset({_ACQUIRE_METHOD})
            ),
        ],
        retry_invoker=make_simple_http_retry_invoker(),
    )


#: First wait, and longest, before asking again for a message object the SuperNode has not
#: stored yet (Flower's ClientApp process waits 1 s first, then up to 10 s: it starts after
#: the objects are stored; this executor asks at once).
OBJECT_BACKOFF_S = (0.01, 0.1)
#: Longest wait for a message's objects.
OBJECT_MAX_WAIT_S = 300.0


def pull_task_input(client: Any) -> tuple[Any, Any, Any]:
    """The task's message, context and run from the SuperNode (the FAB is not used)."""
    from flwr.app import Message
    from flwr.common.serde import context_from_proto, run_from_proto
    from flwr.proto.node_pb2 import Node
    from flwr.proto.runtime_pb2 import PullAppMessagesRequest, PullTaskInputRequest
    from flwr.supercore.inflatable.inflatable_protobuf_utils import (
        make_confirm_message_received_fn_protobuf,
        make_pull_object_fn_protobuf,
    )
    from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
    from flwr.supercore.task_identity import TaskIdentity

    res = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = res.task_id
    TaskIdentity.run_id = res.run.run_id
    TaskIdentity.node_id = res.context.node_id
    context, run = context_from_proto(res.context), run_from_proto(res.run)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("the SuperNode gave the task no message")
    node = Node(node_id=context.node_id)
    tree = pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree,
        make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(
            client.ConfirmMessageReceived, node, context.run_id
        ),
        return_type=Message,
        max_time=OBJECT_MAX_WAIT_S,
        initial_backoff=OBJECT_BACKOFF_S[0],
        backoff_cap=OBJECT_BACKOFF_S[1],
    )
    message.metadata.__dict__["_message_id"] = tree.object_id
    return message, context, run


def run_task(runtime_address: str, token: str) -> str:
    """Run one ClientApp task: the message through the installed ClientApp, the reply and the
    task's status back to the SuperNode. Returns the status."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

    from sandbox.deployment.apps import client_app

    client = RuntimeHttpClient.from_server_address(
        server_address=runtime_address,
        insecure=True,
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        ],
        retry_invoker=make_simple_http_retry_invoker(),
    )
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    message = reply = context = None
    status, details = SubStatus.FAILED, "the ClientApp task failed"
    marks = [time.perf_counter()]
    try:
        heartbeat.start()
        message, context, run = pull_task_input(client)
        marks.append(time.perf_counter())
        if run.fab_id != SANDBOX_FAB_ID:
            raise PermissionError(
                f"this node runs only the sandbox's training app ({SANDBOX_FAB_ID}), not "
                f"{run.fab_id!r}"
            )
        reply = client_app(message=message, context=context)
        marks.append(time.perf_counter())
        status, details = SubStatus.COMPLETED, ""
    except Exception as exc:  # the reply is an error naming it; the executor goes on
        log.exception("ClientApp task failed")
        details = f"{type(exc).__name__}: {exc}"
        if message is not None:
            reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
        except Exception:
            log.exception("could not push the reply")
            status = SubStatus.FAILED
        push_task_output(client, context, status, details)
        marks.append(time.perf_counter())
        if heartbeat.is_running:
            heartbeat.stop()
        client.close()
        marks.append(time.perf_counter())
        stages = (f"{b - a:.3f}" for a, b in zip(marks, marks[1:], strict=False))
        log.info("pull, app, push, close (s): %s", " ".join(stages))
    return str(status)


def serve(runtime_address: str, secret: bytes, poll_interval: float = TASK_POLL_INTERVAL_S) -> None:
    """Acquire and run the SuperNode's ClientApp tasks one at a time, for ever."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType

    import sandbox.deployment.apps  # noqa: F401  (load the node's code once, before any task)

    client = _acquire_client(runtime_address, secret)
    log.info("ClientApp executor serving the SuperNode at %s", runtime_address)
    last_task, interval = time.monotonic(), poll_interval
    while True:
        res = client.AcquireTask(
            AcquireTaskRequest(supported_task_types=[str(TaskType.CLIENT_APP)])
        )
        if res.HasField("task") and res.token:
            started = time.perf_counter()
            status = run_task(runtime_address, res.token)
            log.info(
                "task %d of run %d: %s in %.3f s",
                res.task.task_id,
                res.task.run_id,
                status,
                time.perf_counter() - started,
            )
            last_task, interval = time.monotonic(), poll_interval
            continue
        time.sleep(interval)
        if time.monotonic() - last_task > BUSY_WINDOW_S:
            interval = min(interval * 1.5, IDLE_POLL_INTERVAL_S)


def _quiet(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
        return True
    if record.name.startswith(("httpx", "httpcore", "alembic")):
        return False
    return record.levelno >= logging.INFO


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.deployment.executor --runtime-api-address HOST:PORT
    --superexec-auth-secret-file FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--superexec-auth-secret-file", required=True, type=Path)
    parser.add_argument("--poll-interval", type=float, default=TASK_POLL_INTERVAL_S)
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit when this process (the one that started the executor) is gone",
    )
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        from sandbox.deployment.lifeline import watch_parent

        watch_parent(args.parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:  # not a line per HTTP request
        handler.addFilter(_quiet)
    secret = args.superexec_auth_secret_file.read_bytes()
    if not secret:
        sys.exit("the SuperExec secret file is empty")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.runtime_api_address, secret, args.poll_interval)


if __name__ == "__main__":
    main()
