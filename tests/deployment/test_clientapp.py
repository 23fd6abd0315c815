"""The deployed ClientApp's checks, in-process (no Flower processes): every message is run
through the node's ``RunTask`` checks against the signed instruction the node accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict

from federation.job import JobSpec
from policies.instructions import SignedInstruction
from sandbox.deployment.apps import INSTRUCTION_RECORD, handle
from sandbox.federated_task import ensure_task_identity

from .departments import FEATURES, GRANT, Department, grant

NODES = ("north", "south")


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": FEATURES,
        "label": "default",
        "nodes": NODES,
        "rounds": 2,
        "sample_rate": 0.5,
        "noise_multiplier": 2.0,
        "target_delta": 1e-6,
        "seed": 3,
    }
    base.update(kw)
    return JobSpec(**base)


@pytest.fixture(scope="module")
def north(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Department, JobSpec]]:
    ensure_task_identity()
    dept = Department.create(
        Path(tmp_path_factory.mktemp("north")),
        "north",
        0,
        Ed25519PrivateKey.generate(),
        grant(NODES),
    )
    spec = _spec()
    yield dept, spec


def _message(
    spec: JobSpec,
    signed: dict[str, SignedInstruction] | None,
    kind: str = "query",
    **extra: int,
) -> Message:
    config: dict[str, str | int] = {
        "job": spec.canonical_json(),
        "rows": "{}",
        "grants": json.dumps(dict.fromkeys(NODES, GRANT), sort_keys=True),
        **extra,
    }
    content = RecordDict({"config": ConfigRecord(config)})  # type: ignore[arg-type]
    if signed is not None:
        content[INSTRUCTION_RECORD] = ConfigRecord(
            {d: json.dumps(s.to_json()) for d, s in signed.items()}
        )
    return Message(content, 1, kind)


def _context(dept: Department) -> Context:
    return Context(1, 1, dict(dept.node_config), RecordDict(), {})


def _reason(reply: Message) -> str:
    assert reply.has_error()
    return str(reply.error.reason)


def test_signed_accepted_plan_runs_and_other_rounds_are_refused(
    north: tuple[Department, JobSpec],
) -> None:
    dept, spec = north
    context = _context(dept)
    # Signed but never accepted by the node: refused.
    unaccepted = {"north": dept.sign(spec)}
    assert "not_accepted" in _reason(handle(_message(spec, unaccepted), context))
    signed = {"north": dept.accept(spec)}
    # No instruction at all: refused.
    assert "no signed instruction" in _reason(handle(_message(spec, None), context))
    # The signed plan: the node answers with its name and DP row count only.
    ok = handle(_message(spec, signed), context)
    assert not ok.has_error(), ok.error.reason if ok.has_error() else ""
    assert str(ok.content["node"]["node-name"]) == "north"
    before = dept.steps()
    # A round whose job differs from the signed plan (another learning rate): refused.
    other = _spec(learning_rate=0.5)
    reply = handle(_message(other, signed, "train", **{"server-round": 1}), context)
    assert "plan_mismatch" in _reason(reply)
    # The signed job but a round it does not have: refused.
    reply = handle(_message(spec, signed, "train", **{"server-round": 9}), context)
    assert "plan_mismatch" in _reason(reply) and "round" in _reason(reply)
    # Public row counts the plan was not signed with: refused.
    bad_rows = _message(spec, signed)
    bad_rows.content.config_records["config"]["rows"] = json.dumps({"north": 10})
    assert "public row counts" in _reason(handle(bad_rows, context))
    # Another dataset's instruction does not cover this node.
    south = Department.create(dept.root.parent / "south", "south", 1, dept.authority, dept.grant)
    assert "no signed instruction" in _reason(
        handle(_message(spec, {"south": south.sign(spec)}), context)
    )
    assert dept.steps() == before  # nothing ran under the refused messages


def test_instruction_signed_by_another_key_is_refused(north: tuple[Department, JobSpec]) -> None:
    dept, spec = north
    forger = Department(dept.name, dept.root, Ed25519PrivateKey.generate(), dept.grant)
    forged = {"north": forger.sign(spec)}
    assert "signature" in _reason(handle(_message(spec, forged), _context(dept)))


class _LocalGrid:
    """A grid whose node ids are departments answering in-process through ``handle``; a
    node id without a department is unavailable (the SuperLink answers, as its source)."""

    def __init__(self, nodes: dict[int, Department]) -> None:
        self.nodes = nodes
        self.replies: dict[str, Message] = {}
        self.count = 0

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for message in messages:
            self.count += 1
            mid = f"m{self.count}"
            dst = message.metadata.dst_node_id
            if dst in self.nodes:
                reply = handle(message, _context(self.nodes[dst]))
                reply.metadata.__dict__["_src_node_id"] = dst
            else:
                reply = Message(Error(0, "Node Unavailable"), reply_to=message)
                reply.metadata.__dict__["_src_node_id"] = 1  # the SuperLink
            reply.metadata.__dict__["_reply_to_message_id"] = mid
            self.replies[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, ids: set[str]) -> list[Message]:
        return [self.replies.pop(i) for i in list(ids) if i in self.replies]


def test_roll_call_lists_only_the_jobs_nodes_and_each_gets_its_own_instruction(
    north: tuple[Department, JobSpec],
) -> None:
    from sandbox.deployment.apps import FastGrid

    dept, _ = north
    south_root = dept.root.parent / "south"  # made here unless an earlier test made it
    south = (
        Department("south", south_root, dept.authority, dept.grant)
        if (south_root / "catalog").exists()
        else Department.create(south_root, "south", 1, dept.authority, dept.grant)
    )
    east = Department.create(dept.root.parent / "east", "east", 2, dept.authority, dept.grant)
    spec = _spec(seed=4)
    signed = {d.name: json.dumps(d.accept(spec).to_json()) for d in (dept, south)}
    local = _LocalGrid({7: dept, 8: south, 9: east})
    grid = FastGrid(local, pull_interval=0.0, instructions=signed)  # type: ignore[arg-type]
    assert list(grid.get_node_ids()) == [7, 8]  # east is not in the job
    assert grid.datasets == {7: "north", 8: "south", 9: "east"}
    shared = _message(spec, None).content  # a strategy may share one content object
    queries = [Message(shared, nid, "query") for nid in (7, 8)]
    replies = list(grid.send_and_receive(queries, timeout=10))
    assert [r.has_error() for r in replies] == [False, False], [
        r.error.reason for r in replies if r.has_error()
    ]
    assert INSTRUCTION_RECORD not in shared  # each message got its own copy
    # The SuperLink's error for an unavailable node names that node, not the SuperLink.
    (lost,) = grid.send_and_receive([Message(shared, 10, "query")], timeout=10)
    assert lost.has_error() and lost.metadata.src_node_id == 10
