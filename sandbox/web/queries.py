"""What the web view reads from the authority's state database: indexed, keyset-paginated.

The log page never scans with ``OFFSET``: a page is ``WHERE <filters> AND idx < :before ORDER
BY idx DESC LIMIT n``, and every filter column has an index whose entries are ordered by
``idx`` too (SQLite appends the rowid), so a deep page costs what the first one does.
Entries are appended with the time of their commit, so ``ts_ms`` grows with ``idx`` (up to the
clock skew of several hub processes writing one log): a time range is mapped to an ``idx``
range through the ``ts_ms`` index.
:func:`ensure_indexes` adds the indexes the log's own schema lacks (kind, decision, purpose).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from policies.authority import Authority
from policies.entries import ENTRY_KINDS
from policies.errors import InvalidRequestError
from policies.treehead import SignedTreeHead

#: The purpose an entry names: its own, its request's, its grant's or its access terms'.
PURPOSE_SQL = (
    "coalesce(json_extract(CAST(data AS TEXT), '$.purpose'), "
    "json_extract(CAST(data AS TEXT), '$.request.purpose'), "
    "json_extract(CAST(data AS TEXT), '$.grant.purpose'), "
    "json_extract(CAST(data AS TEXT), '$.terms.purpose'))"
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS web_entries_kind ON entries (kind)",
    "CREATE INDEX IF NOT EXISTS web_entries_decision ON entries (decision)",
    f"CREATE INDEX IF NOT EXISTS web_entries_purpose ON entries ({PURPOSE_SQL})",
)
DECISIONS = ("permit", "deny")
PAGE_SIZE = 50


def ensure_indexes(authority: Authority) -> None:
    """Create the web view's indexes on the log's entries table (idempotent)."""
    with authority.db.transaction() as conn:
        for sql in _INDEXES:
            conn.execute(sql)


@dataclass(frozen=True)
class LogFilter:
    """The log page's filters; ``None`` means any. Times are milliseconds since the epoch."""

    firm: str | None = None
    dataset: str | None = None
    kind: str | None = None
    decision: str | None = None
    purpose: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> LogFilter:
        """From query parameters; unknown kinds or decisions and bad dates are refused."""

        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        kind, decision = text("kind"), text("decision")
        if kind is not None and kind not in ENTRY_KINDS:
            raise InvalidRequestError(f"unknown kind {kind!r}; choose one of the list")
        if decision is not None and decision not in DECISIONS:
            raise InvalidRequestError(f"unknown decision {decision!r}; use permit or deny")
        return cls(
            firm=text("firm"),
            dataset=text("dataset"),
            kind=kind,
            decision=decision,
            purpose=text("purpose"),
            since_ms=_date_ms(text("since"), "since"),
            until_ms=_date_ms(text("until"), "until"),
        )

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for links to the next page)."""
        out = {
            k: v
            for k, v in (
                ("firm", self.firm),
                ("dataset", self.dataset),
                ("kind", self.kind),
                ("decision", self.decision),
                ("purpose", self.purpose),
            )
            if v
        }
        if self.since_ms is not None:
            out["since"] = _ms_date(self.since_ms)
        if self.until_ms is not None:
            out["until"] = _ms_date(self.until_ms)
        return out


def _date_ms(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(f"{name}: write a date as YYYY-MM-DD[THH:MM]") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _ms_date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True)
class LogRow:
    index: int
    ts_ms: int
    kind: str
    firm: str | None
    dataset: str | None
    decision: str | None
    purpose: str | None
    epsilon: float | None
    grant_id: str | None

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class LogPage:
    rows: list[LogRow]
    next_before: int | None  # pass as ``before`` for the next (older) page


def log_page(
    conn: sqlite3.Connection, filters: LogFilter, before: int | None, limit: int = PAGE_SIZE
) -> LogPage:
    """Newest entries first, older than index ``before`` (keyset pagination)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("firm", filters.firm),
        ("dataset", filters.dataset),
        ("kind", filters.kind),
        ("decision", filters.decision),
        (PURPOSE_SQL, filters.purpose),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    # A time range becomes an index range (the first entry at or after each bound, found on
    # the ts_ms index), so the page still walks idx downwards; ``+ts_ms`` keeps the exact
    # test without letting the planner sort the whole range by idx.
    for bound, op, edge in ((filters.since_ms, ">=", ">="), (filters.until_ms, "<", "<")):
        if bound is None:
            continue
        where.append(f"+ts_ms {op} ?")
        args.append(bound)
        first = conn.execute(
            "SELECT idx FROM entries WHERE ts_ms >= ? ORDER BY ts_ms, idx LIMIT 1", (bound,)
        ).fetchone()
        if first is not None:
            where.append(f"idx {edge} ?")
            args.append(int(first[0]))
        elif op == ">=":
            where.append("0")  # nothing at or after ``since``
    if before is not None:
        where.append("idx < ?")
        args.append(before)
    sql = "SELECT idx, data FROM entries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY idx DESC LIMIT ?"
    args.append(limit + 1)
    found = conn.execute(sql, args).fetchall()
    rows = [_row(idx, bytes(data)) for idx, data in found[:limit]]
    return LogPage(rows, rows[-1].index if len(found) > limit else None)


def _row(idx: int, data: bytes) -> LogRow:
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    request: dict[str, Any] = body["request"] if isinstance(body.get("request"), dict) else {}
    grant: dict[str, Any] = body["grant"] if isinstance(body.get("grant"), dict) else {}
    terms: dict[str, Any] = body["terms"] if isinstance(body.get("terms"), dict) else {}
    purpose = next(
        (
            p
            for p in (
                body.get("purpose"),
                request.get("purpose"),
                grant.get("purpose"),
                terms.get("purpose"),
            )
            if p is not None
        ),
        None,
    )
    eps = body.get("epsilon")
    return LogRow(
        index=idx,
        ts_ms=int(body.get("ts_ms", 0) or 0),
        kind=str(body.get("kind", "?")),
        firm=_str(body.get("firm")),
        dataset=_str(body.get("dataset")),
        decision=_str(body.get("decision")),
        purpose=_str(purpose),
        epsilon=float(eps) if isinstance(eps, int | float) else None,
        grant_id=_str(body.get("grant_id") or grant.get("grant_id")),
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def latest_head(authority: Authority) -> SignedTreeHead:
    """The newest stored head if it covers the whole log, else a freshly signed one."""
    size = authority.log.size
    row = (
        authority.db.conn()
        .execute(
            "SELECT size, root, timestamp_ms, key_id, signature FROM tree_heads "
            "ORDER BY rowid DESC LIMIT 1"
        )
        .fetchone()
    )
    if row is not None and int(row[0]) == size:
        return SignedTreeHead(int(row[0]), bytes(row[1]), int(row[2]), row[3], bytes(row[4]))
    return authority.log.sign_tree_head()


@dataclass(frozen=True)
class SpendPoint:
    ts_ms: int
    epsilon: float  # cumulative committed epsilon
    delta: float
    index: int


def spend_series(conn: sqlite3.Connection, dataset: str) -> dict[str, list[SpendPoint]]:
    """Cumulative (epsilon, delta) released on ``dataset`` per grant (key ``""``: all grants)."""
    rows = conn.execute(
        "SELECT idx, data FROM entries WHERE dataset = ? AND kind = 'release' ORDER BY idx",
        (dataset,),
    )
    totals: dict[str, tuple[float, float]] = defaultdict(lambda: (0.0, 0.0))
    series: dict[str, list[SpendPoint]] = defaultdict(list)
    for idx, data in rows:
        body = json.loads(data)
        eps = float(body.get("epsilon") or 0.0)
        delta = float(body.get("delta") or 0.0)
        for key in ("", str(body.get("grant_id") or "")):
            e, d = totals[key]
            totals[key] = (e + eps, d + delta)
            series[key].append(SpendPoint(int(body["ts_ms"]), e + eps, d + delta, idx))
    return dict(series)


def history(conn: sqlite3.Connection, kinds: tuple[str, ...], limit: int = 200) -> list[LogRow]:
    """The newest entries of ``kinds`` (grants, revocations, access workflow), newest first."""
    marks = ",".join("?" * len(kinds))
    found = conn.execute(
        f"SELECT idx, data FROM entries WHERE kind IN ({marks}) ORDER BY idx DESC LIMIT ?",
        (*kinds, limit),
    )
    return [_row(idx, bytes(data)) for idx, data in found]


def entry_summary(data: bytes) -> dict[str, Any]:
    """An entry's JSON body for display (``{}`` if it no longer parses)."""
    try:
        body = json.loads(data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
