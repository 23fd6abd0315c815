"""A department node refuses every instruction the authority did not sign for it, or that
would take it past its own spend, with real SQLite files."""

from __future__ import annotations

import json
import stat
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.errors import InstructionError, InstructionSignatureError
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from policies.instructions import (
    INSTRUCTION_TAG,
    Instruction,
    Revocation,
    SignedInstruction,
    SignedRevocation,
    new_nonce,
    sign_instruction,
    sign_revocation,
    verify_revocation,
    verify_signed,
)
from policies.loss import PrivacyLoss
from sandbox.errors import AdmissionStateError, InstructionRefused
from sandbox.node_guard import GUARD_DB, NodeGuard

NOW = 1_800_000_000.0  # seconds
NOW_MS = int(NOW * 1000)
DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def guard(tmp_path: Path, key: Ed25519PrivateKey) -> NodeGuard:
    g = NodeGuard(tmp_path / "node", key.public_key(), clock=lambda: NOW)
    g.set_dataset_cap("tax", epsilon=10.0, delta=1e-6)
    return g


def instruction(**changes: object) -> Instruction:
    base = Instruction(
        kind="query",
        grant_id="g-1",
        grant_version=1,
        grant_valid_until_ms=NOW_MS + 86_400_000,
        grant_epsilon_cap=2_000_000,  # 2.0 epsilon
        grant_delta_cap=10**9,  # 1e-6
        firm="acme",
        dataset="tax",
        epsilon=500_000,
        delta=0,
        issued_at_ms=NOW_MS - 1_000,
        expires_at_ms=NOW_MS + 60_000,
        nonce=new_nonce(),
        min_group_size=1,
        sql="SELECT COUNT(*) FROM tax",
    )
    return replace(base, **{"nonce": new_nonce(), **changes})  # type: ignore[arg-type]


def refused(guard: NodeGuard, signed: SignedInstruction) -> str:
    with pytest.raises(InstructionRefused) as info:
        guard.admit(signed)
    return info.value.code


def test_a_signed_instruction_is_admitted_and_charged(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    admission = guard.admit(sign_instruction(key, instruction()))
    assert admission.instruction.sql == "SELECT COUNT(*) FROM tax"
    assert guard.grant_spent("g-1", "tax")[:2] == (500_000, 0)
    assert guard.dataset_spent("tax")[:2] == (500_000, 0)
    mode = stat.S_IMODE((guard.state_dir / GUARD_DB).stat().st_mode)
    assert mode == 0o600


def test_unsigned_forged_and_edited_instructions_are_refused(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    instr = instruction()
    good = sign_instruction(key, instr)
    unsigned = SignedInstruction(instr.encode(), b"", good.key_id)
    assert refused(guard, unsigned) == "signature"
    other = Ed25519PrivateKey.generate()
    assert refused(guard, sign_instruction(other, instr)) == "signature"  # another key id
    # another key's signature under the authority's key id
    forged = SignedInstruction(instr.encode(), other.sign(instr.encode()), good.key_id)
    assert refused(guard, forged) == "signature"
    for i in (0, len(INSTRUCTION_TAG) + 5, len(good.payload) // 2, len(good.payload) - 2):
        payload = bytearray(good.payload)
        payload[i] ^= 0x01
        assert refused(guard, SignedInstruction(bytes(payload), good.signature, good.key_id)) == (
            "signature"
        )
    bad_signature = bytearray(good.signature)
    bad_signature[7] ^= 0x80
    assert refused(guard, SignedInstruction(good.payload, bytes(bad_signature), good.key_id)) == (
        "signature"
    )
    assert guard.dataset_spent("tax")[:2] == (0, 0)
    guard.admit(good)  # the untouched original still goes through: its nonce was not used up


def test_non_canonical_or_wrong_tag_payloads_are_refused_even_when_signed(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    instr = instruction()
    data = json.loads(instr.encode()[len(INSTRUCTION_TAG) :])
    spaced = INSTRUCTION_TAG + json.dumps(data, sort_keys=True).encode()
    backwards = dict(reversed(list(data.items())))
    unsorted = INSTRUCTION_TAG + json.dumps(backwards, separators=(",", ":")).encode()
    escaped = (
        INSTRUCTION_TAG
        + json.dumps(data, sort_keys=True, separators=(",", ":"))
        .replace("SELECT", "\\u0053ELECT")
        .encode()
    )
    floats = (
        INSTRUCTION_TAG
        + json.dumps({**data, "epsilon": 500000.0}, sort_keys=True, separators=(",", ":")).encode()
    )
    extra = (
        INSTRUCTION_TAG
        + json.dumps({**data, "note": "x"}, sort_keys=True, separators=(",", ":")).encode()
    )
    v2 = (
        INSTRUCTION_TAG
        + json.dumps({**data, "version": 2}, sort_keys=True, separators=(",", ":")).encode()
    )
    wrong_tag = b"sandbox-revocation-v1\n" + instr.encode()[len(INSTRUCTION_TAG) :]
    for payload in (spaced, unsorted, escaped, floats, extra, v2, wrong_tag):
        signed = SignedInstruction(payload, key.sign(payload), good_key_id(key))
        with pytest.raises(InstructionError):
            verify_signed(key.public_key(), signed)
        assert refused(guard, signed) == "malformed"
    # a revocation notice is never taken for an instruction, nor the reverse
    notice = sign_revocation(key, Revocation("g-1", 2, NOW_MS))
    assert refused(guard, SignedInstruction(notice.payload, notice.signature, notice.key_id)) == (
        "malformed"
    )
    signed = sign_instruction(key, instr)
    with pytest.raises(InstructionError):
        verify_revocation(key.public_key(), SignedRevocation(*_fields(signed)))


def good_key_id(key: Ed25519PrivateKey) -> str:
    return sign_instruction(key, instruction()).key_id


def _fields(signed: SignedInstruction) -> tuple[bytes, bytes, str]:
    return signed.payload, signed.signature, signed.key_id


def test_expired_future_long_lived_and_out_of_grant_instructions_are_refused(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    cases = {
        "expired": instruction(issued_at_ms=NOW_MS - 120_000, expires_at_ms=NOW_MS - 1),
        "not_yet_valid": instruction(issued_at_ms=NOW_MS + 60_000, expires_at_ms=NOW_MS + 90_000),
        "lifetime": instruction(expires_at_ms=NOW_MS + 10 * 3_600_000),
        "grant_expired": instruction(grant_valid_until_ms=NOW_MS - 1),
    }
    for code, instr in cases.items():
        assert refused(guard, sign_instruction(key, instr)) == code
    assert guard.dataset_spent("tax")[:2] == (0, 0)


def test_a_revoked_grant_is_refused_and_a_forged_revocation_is_not_recorded(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    guard.admit(sign_instruction(key, instruction()))
    pending = sign_instruction(key, instruction())  # issued before the revocation
    other = Ed25519PrivateKey.generate()
    with pytest.raises(InstructionRefused) as info:
        guard.revoke(sign_revocation(other, Revocation("g-1", 2, NOW_MS)))
    assert info.value.code == "signature"
    assert not guard.is_revoked("g-1")
    notice = guard.revoke(sign_revocation(key, Revocation("g-1", 2, NOW_MS)))
    assert notice.grant_version == 2 and guard.is_revoked("g-1")
    assert refused(guard, pending) == "revoked"
    assert refused(guard, sign_instruction(key, instruction(grant_version=3))) == "revoked"
    guard.admit(sign_instruction(key, instruction(grant_id="g-2")))  # other grants unaffected


def test_a_replayed_instruction_is_refused(guard: NodeGuard, key: Ed25519PrivateKey) -> None:
    signed = sign_instruction(key, instruction())
    admission = guard.admit(signed)
    assert refused(guard, signed) == "replayed"
    guard.settle(admission, released=False)  # even after a refund the nonce stays used
    assert refused(guard, signed) == "replayed"
    assert guard.grant_spent("g-1", "tax")[:2] == (0, 0)


def test_beyond_the_grants_own_spend_is_refused_even_when_otherwise_valid(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    for _ in range(4):  # 4 x 0.5 = the grant's 2.0
        guard.admit(sign_instruction(key, instruction()))
    over = sign_instruction(key, instruction(epsilon=1))
    assert refused(guard, over) == "grant_budget"
    with pytest.raises(InstructionRefused, match="spent .*epsilon 2.* of its .*epsilon 2"):
        guard.admit(over)
    assert refused(guard, sign_instruction(key, instruction(delta=10**9 + 1))) == "grant_budget"
    assert guard.grant_spent("g-1", "tax")[:2] == (2_000_000, 0)
    # an older grant version is refused once a newer one was seen
    guard.admit(sign_instruction(key, instruction(grant_version=2, grant_epsilon_cap=3_000_000)))
    old = instruction(grant_version=1, grant_epsilon_cap=9_000_000)
    assert refused(guard, sign_instruction(key, old)) == "stale_grant"


def test_the_dataset_cap_holds_across_grants_and_is_required(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    # ten grants of 2.0 each, but the department caps the dataset at 10.0
    admitted = 0
    for g in range(10):
        for _ in range(2):
            instr = instruction(grant_id=f"g-{g}", epsilon=1_000_000)
            try:
                guard.admit(sign_instruction(key, instr))
                admitted += 1
            except InstructionRefused as exc:
                assert exc.code == "dataset_budget"
    assert admitted == 10
    assert guard.dataset_spent("tax")[:2] == (10_000_000, 0)
    assert refused(guard, sign_instruction(key, instruction(dataset="health"))) == (
        "no_dataset_cap"
    )
    guard.set_dataset_cap("tax", epsilon=5.0, delta=1e-6)  # lowered below what was spent
    assert refused(guard, sign_instruction(key, instruction(grant_id="g-x"))) == "dataset_budget"


def test_settle_keeps_a_release_and_refunds_only_a_confirmed_non_release(
    guard: NodeGuard, key: Ed25519PrivateKey
) -> None:
    released = guard.admit(sign_instruction(key, instruction()))
    unreleased = guard.admit(sign_instruction(key, instruction()))
    pending = guard.admit(sign_instruction(key, instruction()))
    guard.settle(released, released=True)
    guard.settle(released, released=True)  # the same outcome again does nothing
    with pytest.raises(AdmissionStateError):
        guard.settle(released, released=False)
    guard.settle(unreleased, released=False)
    guard.settle(unreleased, released=False)
    with pytest.raises(AdmissionStateError):
        guard.settle(unreleased, released=True)
    assert guard.grant_spent("g-1", "tax")[:2] == (1_000_000, 0)  # released + still pending
    assert pending.nonce == pending.instruction.nonce


def test_concurrent_admits_never_overspend(guard: NodeGuard, key: Ed25519PrivateKey) -> None:
    signed = [sign_instruction(key, instruction(epsilon=100_000)) for _ in range(40)]
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(batch: list[SignedInstruction]) -> None:
        start.wait()
        for s in batch:
            try:
                guard.admit(s)
                outcome = "ok"
            except InstructionRefused as exc:
                outcome = exc.code
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(signed[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 20  # 20 x 0.1 = the grant's 2.0
    assert results.count("grant_budget") == 20
    assert guard.grant_spent("g-1", "tax")[:2] == (2_000_000, 0)
    assert guard.dataset_spent("tax")[:2] == (2_000_000, 0)


def test_a_restarted_node_remembers_nonces_spend_caps_and_revocations(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    first = NodeGuard(tmp_path / "node", key.public_key(), clock=lambda: NOW)
    first.set_dataset_cap("tax", epsilon=10.0, delta=1e-6)
    signed = sign_instruction(key, instruction())
    first.admit(signed)
    first.revoke(sign_revocation(key, Revocation("g-old", 4, NOW_MS)))
    second = NodeGuard(tmp_path / "node", key.public_key(), clock=lambda: NOW)
    assert refused(second, signed) == "replayed"
    assert second.grant_spent("g-1", "tax")[:2] == (500_000, 0)
    assert second.dataset_cap("tax") == (10_000_000, 10**9, None)
    assert refused(second, sign_instruction(key, instruction(grant_id="g-old"))) == "revoked"
    # a clock set back does not revive an instruction the node has seen expire
    late = NodeGuard(tmp_path / "node", key.public_key(), clock=lambda: NOW + 3600)
    late.forget_expired(older_than_ms=0)
    back = NodeGuard(tmp_path / "node", key.public_key(), clock=lambda: NOW)
    assert refused(back, signed) == "expired"


def test_instructions_from_a_grant_and_bad_fields(key: Ed25519PrivateKey) -> None:
    grant = Grant(
        grant_id="g-7",
        firm="acme",
        purpose="credit-risk-statistics",
        legal_basis="PIPL art. 13(1)",
        actions={Action.QUERY, Action.TRAIN},
        models={"logreg"},
        epsilon_per_use=0.5,
        min_group_size=10,
        approved_by="li.wei@stats.gov",
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        valid_until=datetime(2027, 1, 1, tzinfo=UTC),
        datasets={"tax": DatasetTerms(epsilon=3, delta=1e-6, columns={"x": ColumnRule.GROUP_BY})},
    )
    q = Instruction.for_query(grant, "tax", "SELECT 1", PrivacyLoss(0.25, 1e-9), now_ms=NOW_MS)
    assert (q.grant_epsilon_cap, q.grant_delta_cap, q.epsilon, q.delta) == (
        3_000_000,
        10**9,
        250_000,
        1_000_000,
    )
    assert q.loss == PrivacyLoss(0.25, 1e-9)
    assert q.min_group_size == 10  # the grant's minimum by default
    raised = Instruction.for_query(
        grant, "tax", "SELECT 1", PrivacyLoss(0.25), now_ms=NOW_MS, min_group_size=30
    )
    assert raised.min_group_size == 30
    for lower in (9, 0, True):
        with pytest.raises(InstructionError, match="below grant"):
            Instruction.for_query(
                grant, "tax", "SELECT 1", PrivacyLoss(0.25), now_ms=NOW_MS, min_group_size=lower
            )
    t = Instruction.for_job("train", grant, "tax", DIGEST, PrivacyLoss(1.0), max_steps=20, now_ms=1)
    assert verify_signed(key.public_key(), sign_instruction(key, t)) == t
    assert t.min_group_size == 10
    with pytest.raises(InstructionError):
        Instruction.for_query(grant, "health", "SELECT 1", PrivacyLoss(0.1), now_ms=1)
    with pytest.raises(InstructionError):
        Instruction.for_query(grant, "tax", "SELECT 1", PrivacyLoss(0, 1e-9, rho=0.1), now_ms=1)
    for bad in (
        {"epsilon": 0.5},
        {"epsilon": True},
        {"epsilon": 0},
        {"nonce": "short"},
        {"kind": "export"},
        {"sql": None},
        {"plan_digest": DIGEST},
        {"expires_at_ms": NOW_MS - 10_000},
        {"firm": "a\x00b"},
        {"grant_id": "g 1"},
        {"version": 2},
        {"min_group_size": 0},
        {"min_group_size": 1_000_000_001},
        {"min_group_size": None},
        {"min_group_size": 2.0},
    ):
        with pytest.raises(InstructionError):
            instruction(**bad)
    with pytest.raises(InstructionError):
        instruction(kind="train", sql=None, plan_digest=DIGEST)  # no max_steps
    with pytest.raises(InstructionSignatureError):
        verify_signed(key.public_key(), "not signed")  # type: ignore[arg-type]


def test_signed_messages_round_trip_as_json(key: Ed25519PrivateKey) -> None:
    signed = sign_instruction(key, instruction(sql="SELECT COUNT(*) FROM 税务"))
    again = SignedInstruction.from_json(json.loads(json.dumps(signed.to_json())))
    assert again == signed
    assert verify_signed(key.public_key(), again).sql == "SELECT COUNT(*) FROM 税务"
    with pytest.raises(InstructionError):
        SignedInstruction.from_json({"payload": "x"})
