"""The request -> approval workflow (事前审批): a firm asks, the owning departments answer,
the authority grants.

A firm submits :class:`AccessTerms` (datasets with their columns, rules and budgets, purpose,
legal basis, actions, models, per-use epsilon, minimum group size, validity). Every
department that owns a requested dataset (its :class:`policies.DatasetPolicy` ``department``
when the request was submitted) approves, refuses (with a reason the firm sees) or amends
(narrows, then approves) its datasets. When every dataset is approved the authority issues
the grant with :meth:`policies.Authority.create_grant`, naming the approvers; one refusal
ends the request as refused.

Each step is one SQLite transaction in the authority's ``state.db`` holding the change and its
log entry (``access_request``, ``access_review``, ``access_outcome``). The grant is issued
right after the last approval commits, under an id derived from the request
(:func:`grant_id_for`); if the process stops in between, the next :class:`Workflow` on the
state directory issues it (:meth:`Workflow.finish_approved`).

Who acts is not checked here: ``firm``, ``department`` and ``reviewer`` are names the service
layer takes from the caller's verified credential (``sandbox.credentials.Principal``), never
from the request body.

>>> import tempfile, pathlib
>>> from policies import Authority
>>> workflow = Workflow(Authority(pathlib.Path(tempfile.mkdtemp()) / "state"))
>>> workflow.pending("税务局")
[]
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from policies.authority import Authority, _guarded
from policies.bounds import check_text
from policies.errors import (
    InvalidRequestError,
    PolicyError,
    UnknownAccessRequestError,
    UnknownGrantError,
)
from policies.grants import Grant
from policies.parsing import parse_model
from policies.workflow_rules import (
    APPROVING,
    check_name,
    check_reason,
    fits_policy,
    grant_id_for,
    must_be_pending,
    owned_reviews,
    undecided,
    unknown_request,
)
from policies.workflow_steps import close_request, mark_if_approved, record_review
from policies.workflow_store import (
    MAX_NAME,
    MAX_REASON,
    SCHEMA,
    AccessRequest,
    AccessTerms,
    Amendment,
    RequestState,
    Review,
    ReviewDecision,
    read_request,
    read_requests,
)


class Workflow:
    """Access requests and their reviews over an :class:`Authority`'s database and log."""

    @_guarded
    def __init__(self, authority: Authority, clock: Callable[[], float] = time.time) -> None:
        self.authority = authority
        self.db = authority.db
        self.log = authority.log
        self._clock = clock
        self.db.script(SCHEMA)
        self.finish_approved()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the firm -------------------------------------------------------------------------

    @_guarded
    def submit(self, firm: str, terms: AccessTerms | Mapping[str, Any] | str) -> AccessRequest:
        """Store a new pending request of ``firm`` and log it; return it."""
        firm = check_name(firm, "firm")
        if not isinstance(terms, AccessTerms):
            terms = AccessTerms.parse(terms)
        now_ms = self._now_ms()
        if terms.valid_until.timestamp() * 1000 <= now_ms:
            raise InvalidRequestError("valid_until has already passed; ask for a later end")
        request_id = f"ar-{secrets.token_hex(8)}"
        with self.db.transaction() as conn:
            owners: dict[str, str] = {}
            for name, dataset_terms in terms.datasets.items():
                policy = self.authority.registry.dataset(name, conn)
                fits_policy(name, dataset_terms, policy)
                owners[name] = policy.department
            fields = {
                "request_id": request_id,
                "firm": firm,
                "terms": terms.model_dump(mode="json"),
                "departments": owners,
            }
            [index] = self.log.append_in(conn, [("access_request", fields)])
            body = terms.model_dump_json()
            conn.execute(
                "INSERT INTO access_requests VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (request_id, firm, RequestState.PENDING, body, body, now_ms, index, now_ms),
            )
            conn.executemany(
                "INSERT INTO access_reviews (request_id, dataset, department, decision) "
                "VALUES (?, ?, ?, ?)",
                [(request_id, d, dept, ReviewDecision.PENDING) for d, dept in owners.items()],
            )
        return self.get(request_id)

    @_guarded
    def withdraw(
        self, request_id: str, firm: str, reason: str = "withdrawn by the firm"
    ) -> AccessRequest:
        """The firm takes back its pending request (logged)."""
        with self.db.transaction() as conn:
            request = self._load(conn, request_id, firm=check_name(firm, "firm"))
            must_be_pending(request, self._now_ms())
            close_request(
                conn,
                self.log,
                self._now_ms(),
                request,
                RequestState.WITHDRAWN,
                [check_reason(reason, "reason")],
            )
        return self.get(request_id)

    # -- departments ----------------------------------------------------------------------

    @_guarded
    def approve(
        self,
        request_id: str,
        department: str,
        *,
        dataset: str | None = None,
        reviewer: str | None = None,
        note: str = "",
    ) -> AccessRequest:
        """Approve ``dataset`` (default: every dataset of the request ``department`` owns).

        Approving again what the department already approved changes nothing and logs nothing.
        """
        department = check_name(department, "department")
        reviewer = check_name(reviewer or department, "reviewer")
        note = check_text(note, "note", MAX_REASON)
        with self.db.transaction() as conn:
            request = self._load(conn, request_id)
            targets = owned_reviews(request, department, dataset)
            todo = [r for r in targets if r.decision is ReviewDecision.PENDING]
            if not todo and all(r.decision in APPROVING for r in targets):
                issue = request.state is RequestState.APPROVED  # a retry finishes the grant
            else:
                must_be_pending(request, self._now_ms())
                for review in todo:
                    record_review(
                        conn,
                        self.log,
                        self._now_ms(),
                        request,
                        review,
                        ReviewDecision.APPROVED,
                        reviewer,
                        note,
                    )
                issue = mark_if_approved(conn, request_id, self._now_ms())
        if issue:
            self._issue(request_id)
        return self.get(request_id)

    @_guarded
    def refuse(
        self,
        request_id: str,
        department: str,
        reason: str,
        *,
        dataset: str | None = None,
        reviewer: str | None = None,
    ) -> AccessRequest:
        """Refuse with a reason the firm sees; the whole request ends as refused.

        To refuse only some columns, :meth:`amend` the dataset dropping them instead.
        """
        department = check_name(department, "department")
        reviewer = check_name(reviewer or department, "reviewer")
        reason = check_reason(reason, "reason for the refusal")
        with self.db.transaction() as conn:
            request = self._load(conn, request_id)
            targets = owned_reviews(request, department, dataset)
            must_be_pending(request, self._now_ms())
            todo = undecided(request_id, targets)
            for review in todo:
                record_review(
                    conn,
                    self.log,
                    self._now_ms(),
                    request,
                    review,
                    ReviewDecision.REFUSED,
                    reviewer,
                    reason,
                )
            close_request(
                conn,
                self.log,
                self._now_ms(),
                request,
                RequestState.REFUSED,
                [f"{department}: {reason}"],
            )
        return self.get(request_id)

    @_guarded
    def amend(
        self,
        request_id: str,
        department: str,
        dataset: str,
        amendment: Amendment | Mapping[str, Any],
        reason: str,
        *,
        reviewer: str | None = None,
    ) -> AccessRequest:
        """Narrow the request for ``dataset`` (and, optionally, its validity, actions, models,
        per-use epsilon or group size), then approve that dataset. The firm sees the reason."""
        department = check_name(department, "department")
        reviewer = check_name(reviewer or department, "reviewer")
        reason = check_reason(reason, "reason for the amendment")
        if not isinstance(amendment, Amendment):
            amendment = parse_model(Amendment, amendment, "amendment")
        with self.db.transaction() as conn:
            request = self._load(conn, request_id)
            targets = owned_reviews(request, department, dataset)
            must_be_pending(request, self._now_ms())
            [review] = undecided(request_id, targets)
            terms = amendment.apply(request.terms, dataset)
            conn.execute(
                "UPDATE access_requests SET terms = ?, updated_ms = ? WHERE request_id = ?",
                (terms.model_dump_json(), self._now_ms(), request_id),
            )
            record_review(
                conn,
                self.log,
                self._now_ms(),
                request,
                review,
                ReviewDecision.AMENDED,
                reviewer,
                reason,
                amendment,
                terms,
            )
            issue = mark_if_approved(conn, request_id, self._now_ms())
        if issue:
            self._issue(request_id)
        return self.get(request_id)

    # -- reading --------------------------------------------------------------------------

    @_guarded
    def get(
        self, request_id: str, *, firm: str | None = None, department: str | None = None
    ) -> AccessRequest:
        """One request; with ``firm`` or ``department``, only if it is theirs to see."""
        request = self._load(self.db.conn(), request_id, firm=firm)
        if department is not None and all(r.department != department for r in request.reviews):
            raise UnknownAccessRequestError(unknown_request(request_id))
        return request

    @_guarded
    def pending(self, department: str) -> list[AccessRequest]:
        """Pending requests waiting for ``department`` and still within their validity,
        oldest first."""
        waiting = read_requests(
            self.db.conn(),
            "state = ? AND request_id IN (SELECT request_id FROM access_reviews "
            "WHERE department = ? AND decision = ?)",
            (RequestState.PENDING, department, ReviewDecision.PENDING),
        )
        now_ms = self._now_ms()
        return [r for r in waiting if r.terms.valid_until.timestamp() * 1000 > now_ms]

    @_guarded
    def requests_of(self, firm: str) -> list[AccessRequest]:
        """Every request of ``firm`` with its state, reviews and reasons, oldest first."""
        return read_requests(self.db.conn(), "firm = ?", (firm,))

    # -- issuing --------------------------------------------------------------------------

    @_guarded
    def finish_approved(self) -> list[str]:
        """Issue the grant of every fully approved request not yet granted (after a crash
        between the last approval and the grant); return the request ids now granted.

        A grant that still cannot be issued leaves its request ``approved``; approving it
        again retries and raises the reason.
        """
        rows = self.db.conn().execute(
            "SELECT request_id FROM access_requests WHERE state = ?", (RequestState.APPROVED,)
        )
        done = []
        for (request_id,) in rows.fetchall():
            try:
                self._issue(request_id)
            except PolicyError:
                continue
            done.append(request_id)
        return done

    def _issue(self, request_id: str) -> None:
        request = self.get(request_id)
        if request.state is not RequestState.APPROVED:
            return
        grant_id = grant_id_for(request_id)
        fields = request.terms.model_dump()
        fields.update(grant_id=grant_id, firm=request.firm, approved_by=request.approvers)
        grant = parse_model(Grant, fields, "grant")
        try:
            self.authority.create_grant(grant)
        except InvalidRequestError as exc:
            try:  # issued before a crash: the grant exists already
                existing = self.authority.registry.grant_record(grant_id)
            except UnknownGrantError:
                raise exc from None
            if existing.firm != request.firm:
                raise
        with self.db.transaction() as conn:
            changed = conn.execute(
                "UPDATE access_requests SET state = ?, grant_id = ?, updated_ms = ? "
                "WHERE request_id = ? AND state = ?",
                (RequestState.GRANTED, grant_id, self._now_ms(), request_id, RequestState.APPROVED),
            ).rowcount
            if changed:
                outcome = {
                    "request_id": request_id,
                    "firm": request.firm,
                    "state": RequestState.GRANTED.value,
                    "grant_id": grant_id,
                    "approved_by": request.approvers,
                }
                self.log.append_in(conn, [("access_outcome", outcome)])

    def _load(
        self, conn: sqlite3.Connection, request_id: str, *, firm: str | None = None
    ) -> AccessRequest:
        check_text(request_id, "request id", MAX_NAME)
        request = read_request(conn, request_id)
        if request is None or (firm is not None and request.firm != firm):
            raise UnknownAccessRequestError(unknown_request(request_id))
        return request


__all__ = [
    "AccessRequest",
    "AccessTerms",
    "Amendment",
    "RequestState",
    "Review",
    "ReviewDecision",
    "Workflow",
    "grant_id_for",
]
