"""The steps of the access-request workflow inside one transaction: each writes its change to
the request tables and its entry to the transparency log on the same connection."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from policies.log import TransparencyLog
from policies.workflow_rules import APPROVING
from policies.workflow_store import (
    AccessRequest,
    AccessTerms,
    Amendment,
    RequestState,
    Review,
    ReviewDecision,
)


def record_review(
    conn: sqlite3.Connection,
    log: TransparencyLog,
    now_ms: int,
    request: AccessRequest,
    review: Review,
    decision: ReviewDecision,
    reviewer: str,
    reason: str,
    amendment: Amendment | None = None,
    terms: AccessTerms | None = None,
) -> None:
    fields: dict[str, Any] = {
        "request_id": request.request_id,
        "firm": request.firm,
        "dataset": review.dataset,
        "department": review.department,
        "reviewer": reviewer,
        "answer": decision.value,
        "reason": reason,
    }
    changes = None
    if amendment is not None and terms is not None:
        changes = amendment.changes()
        fields["amendment"] = changes
        fields["terms"] = terms.model_dump(mode="json")
    [index] = log.append_in(conn, [("access_review", fields)])
    conn.execute(
        "UPDATE access_reviews SET decision = ?, reviewer = ?, reason = ?, amendment = ?, "
        "decided_ms = ?, log_index = ? WHERE request_id = ? AND dataset = ?",
        (
            decision,
            reviewer,
            reason or None,
            None if changes is None else json.dumps(changes, sort_keys=True),
            now_ms,
            index,
            request.request_id,
            review.dataset,
        ),
    )


def mark_if_approved(conn: sqlite3.Connection, request_id: str, now_ms: int) -> bool:
    """Mark the request approved if every dataset is; True if it was just marked."""
    left = conn.execute(
        "SELECT count(*) FROM access_reviews WHERE request_id = ? AND decision NOT IN (?, ?)",
        (request_id, *APPROVING),
    ).fetchone()[0]
    if left:
        return False
    conn.execute(
        "UPDATE access_requests SET state = ?, updated_ms = ? WHERE request_id = ?",
        (RequestState.APPROVED, now_ms, request_id),
    )
    return True


def close_request(
    conn: sqlite3.Connection,
    log: TransparencyLog,
    now_ms: int,
    request: AccessRequest,
    state: RequestState,
    reasons: list[str],
) -> None:
    conn.execute(
        "UPDATE access_requests SET state = ?, updated_ms = ? WHERE request_id = ?",
        (state, now_ms, request.request_id),
    )
    outcome = {
        "request_id": request.request_id,
        "firm": request.firm,
        "state": state.value,
        "reasons": reasons,
    }
    log.append_in(conn, [("access_outcome", outcome)])
