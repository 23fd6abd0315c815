"""Conversions the hub's services share: budget accounts as ``BudgetAccount``, the canonical
release bytes a firm is handed, and the columns a query plan uses as the policy engine checks
them."""

from __future__ import annotations

import hashlib
import json

from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]

from policies.accounts import AccountStatus
from policies.grants import ColumnUse
from policies.instructions import Instruction, SignedInstruction
from policies.loss import EPS_UNITS
from policies.requests import ColumnRef
from sandbox.protocol.v1 import sandbox_pb2 as pb
from sandbox.query.plan import QueryPlan

#: The pseudo-column a grant lists (``"*": aggregate_only``) to allow COUNT(*).
ROW_COUNT = "*"


def budget_account_pb(status: AccountStatus, grant_id: str, dataset: str) -> pb.BudgetAccount:
    """An :class:`policies.accounts.AccountStatus` as a ``BudgetAccount``."""
    return pb.BudgetAccount(
        account=status.account,
        grant_id=grant_id,
        dataset=dataset,
        epsilon_cap=status.epsilon_cap,
        delta_cap=status.delta_cap,
        epsilon_spent=status.epsilon_spent,
        delta_spent=status.delta_spent,
        basic_epsilon=status.basic_epsilon,
        rho=status.rho,
        pending=status.pending,
        committed=status.committed,
        refunded=status.refunded,
        withheld=status.withheld,
    )


def release_bytes(result: pb.QueryResult) -> bytes:
    """The exact bytes a firm is handed and the log's release digest covers: the result's
    canonical JSON (protobuf field names, sorted keys, no spaces, UTF-8).

    A firm recomputes ``sha256(release_bytes(reply.result))`` and compares it with
    ``reply.release_digest`` and with the logged release entry.

    >>> release_bytes(pb.QueryResult(dataset="pums", outputs=["n"], epsilon_spent=0.5))
    b'{"dataset":"pums","epsilon_spent":0.5,"outputs":["n"]}'
    """
    data = json_format.MessageToDict(result, preserving_proto_field_name=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def query_columns(plan: QueryPlan) -> tuple[ColumnRef, ...]:
    """Every column a plan touches and how, as the policy engine checks them (COUNT(*) is a
    use of the pseudo-column ``*``)."""
    uses: dict[str, set[str]] = {k: set(v) for k, v in plan.column_uses().items()}
    if any(a.kind == "count" and a.column is None for a in plan.aggregates):
        uses[ROW_COUNT] = {"aggregate"}
    return tuple(
        ColumnRef(name=name, use=ColumnUse(use))
        for name, col_uses in sorted(uses.items())
        for use in sorted(col_uses)
    )


def check_reply(
    reply: pb.ExecuteResponse, signed: SignedInstruction, instruction: Instruction
) -> str | None:
    """Why a node's answer is not a release of exactly this instruction (``None``: it is)."""
    if reply.WhichOneof("outcome") != "query_result":
        return f"expected a query result, got {reply.WhichOneof('outcome') or 'nothing'}"
    if reply.instruction_digest != hashlib.sha256(signed.payload).digest():
        return "the answer is for another instruction"
    result = reply.query_result
    if result.dataset != instruction.dataset or result.sql != instruction.sql:
        return "the result is for another dataset or query"
    if result.epsilon_spent * EPS_UNITS > instruction.epsilon + 1:
        return "the node reports spending more than the instruction allows"
    return None
