"""What a transparency-log entry is: its kinds, its fields and its canonical bytes.

Every entry is one line of canonical JSON (sorted keys, no spaces, UTF-8) holding at least
``index``, ``ts_ms`` and ``kind``; its leaf hash is ``SHA-256(0x00 || line)``.

>>> validated_entry("refund", {"reservation_id": "r1"})
{'reservation_id': 'r1'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policies.errors import InvalidRequestError

ENTRY_KINDS = frozenset(
    {
        "request",
        "decision",
        "reservation",
        "release",
        "withheld",
        "refund",
        "grant",
        "revocation",
        "dataset",
        "policy",
        "access_request",
        "access_review",
        "access_outcome",
    }
)
RESERVED_FIELDS = frozenset({"index", "ts_ms", "kind"})


def encode_entry(index: int, ts_ms: int, kind: str, fields: Mapping[str, Any]) -> bytes:
    """Canonical bytes of one entry (the exact bytes the leaf hash covers).

    >>> encode_entry(0, 5, "policy", {"digest": "ab"})
    b'{"digest":"ab","index":0,"kind":"policy","ts_ms":5}'
    """
    body = dict(fields)
    body.update(index=index, ts_ms=ts_ms, kind=kind)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def validated_entry(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` as the body of a ``kind`` entry, or ``InvalidRequestError`` saying why not."""
    if kind not in ENTRY_KINDS:
        raise InvalidRequestError(
            f"unknown log entry kind {kind!r}; use one of {sorted(ENTRY_KINDS)}"
        )
    clash = RESERVED_FIELDS.intersection(fields)
    if clash:
        raise InvalidRequestError(f"log entry fields {sorted(clash)} are set by the log")
    body = dict(fields)
    try:
        encode_entry(0, 0, kind, body)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"log entry is not JSON-serialisable: {exc}") from exc
    return body
