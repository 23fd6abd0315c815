"""The governed-use path (Authority.use): reserve what will be spent, commit on release,
refund only when nothing was released, and log every step."""

from __future__ import annotations

import json

import pytest
from policy_helpers import query

from policies import Authority, InvalidRequestError, PrivacyLoss
from policies.ledger import Reservation
from policies.use import Outcome


def kinds(authority: Authority, start: int) -> list[str]:
    return [json.loads(e)["kind"] for e in authority.log.entries(start)]


def test_a_release_is_reserved_at_the_spent_loss_and_committed(authority: Authority) -> None:
    decision = authority.decide(query(epsilon=0.5))
    start = authority.log.size
    settled = authority.use(
        [decision], lambda rs: Outcome("v", b"released"), spend=[PrivacyLoss(0.375)]
    )
    assert settled.released and settled.value == "v"
    assert kinds(authority, start) == ["reservation", "release"]
    reservation = authority.log.search(kind="reservation")[0]
    assert reservation["units"]["epsilon"] == 375_000
    assert reservation["decided_units"]["epsilon"] == 500_000
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(3.0 - 0.375)
    assert settled.release_indexes == {"tax": start + 1}


def test_spending_more_than_decided_is_refused_and_charges_nothing(authority: Authority) -> None:
    decision = authority.decide(query(epsilon=0.5))
    start = authority.log.size
    with pytest.raises(InvalidRequestError, match="exceeds the decided loss"):
        authority.use([decision], lambda rs: Outcome(None, b"x"), spend=[PrivacyLoss(0.6)])
    assert authority.log.size == start
    authority.use([decision], lambda rs: Outcome(None, b"x"))  # still usable, once
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(2.5)


def test_a_run_that_raises_is_refunded(authority: Authority) -> None:
    decision = authority.decide(query())

    def fails(reservations: tuple[Reservation, ...]) -> Outcome[None]:
        raise RuntimeError("the mechanism failed")

    start = authority.log.size
    with pytest.raises(RuntimeError):
        authority.use([decision], fails)
    assert kinds(authority, start) == ["reservation", "refund"]
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(3.0)


def test_a_failure_after_a_partial_release_stays_charged(authority: Authority) -> None:
    decision = authority.decide(query(epsilon=0.5))
    start = authority.log.size
    settled = authority.use(
        [decision],
        lambda rs: Outcome("partial", None, "aborted"),
        on_failure=lambda r, reason: f'{{"status":"{reason}"}}'.encode(),
    )
    assert not settled.released
    assert kinds(authority, start) == ["reservation", "release"]
    assert authority.remaining("g-credit", "tax").epsilon == pytest.approx(2.5)


def test_a_use_needs_a_permit(authority: Authority) -> None:
    with pytest.raises(InvalidRequestError):
        authority.use([], lambda rs: Outcome(None, b"x"))
    deny = authority.decide(query(purpose="marketing"))
    with pytest.raises(InvalidRequestError, match="deny"):
        authority.use([deny], lambda rs: Outcome(None, b"x"))
