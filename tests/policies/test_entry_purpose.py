"""Reservation and release entries name the purpose of the grant they are charged to."""

from __future__ import annotations

import json

from policy_helpers import query

from policies import Authority


def test_reservation_and_release_entries_carry_the_purpose(authority: Authority) -> None:
    decision = authority.decide(query())
    index = authority.commit(authority.reserve(decision), b'{"n": 1}')
    entries = [json.loads(e) for e in authority.log.entries()]
    release = entries[index]
    reservation = next(e for e in entries if e["kind"] == "reservation")
    assert release["kind"] == "release"
    assert release["purpose"] == reservation["purpose"] == "credit-risk-statistics"
