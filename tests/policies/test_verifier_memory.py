"""The verifier's memory pins the key and the last head: swaps, truncation, forks fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.keys import load_or_create_signing_key
from policies.log import TransparencyLog
from policies.verifier_memory import VerifierMemory, verifier_home
from policies.verify import VerificationError


def _log(path: Path, key: Ed25519PrivateKey, n: int, tag: str = "a") -> TransparencyLog:
    log = TransparencyLog(path, key)
    log.append_many([("decision", {"firm": f"{tag}{i}", "decision": "permit"}) for i in range(n)])
    return log


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key(tmp_path / "keys")


def test_first_use_pins_then_extensions_verify(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    memory = VerifierMemory(tmp_path / "verifier")
    log = _log(tmp_path / "log.db", key, 5)
    log.export(tmp_path / "e1.jsonl")
    first = memory.verify(tmp_path / "e1.jsonl", key.public_key())
    assert first.before is None and first.log.size == 5
    stored = tmp_path / "verifier" / "default.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    log.append("decision", {"firm": "late", "decision": "deny"})
    log.export(tmp_path / "e2.jsonl")
    second = memory.verify(tmp_path / "e2.jsonl", key.public_key())
    assert second.before is not None and second.before.head.size == 5 and second.log.size == 6
    recalled = memory.recall()
    assert recalled is not None and recalled.head.size == 6


def test_key_swap_truncation_and_fork_fail(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    memory = VerifierMemory(tmp_path / "verifier")
    log = _log(tmp_path / "log.db", key, 6)
    log.export(tmp_path / "old.jsonl")  # an older, shorter export kept by an attacker
    log.append_many([("decision", {"firm": "x", "decision": "permit"})] * 3)
    log.export(tmp_path / "now.jsonl")
    memory.verify(tmp_path / "now.jsonl", key.public_key())
    # Rolled back: an older (validly signed) export of the same log.
    with pytest.raises(VerificationError, match="truncated .* last verified 9"):
        memory.verify(tmp_path / "old.jsonl", key.public_key())
    # A fork under the same key: same size, other entries.
    fork = _log(tmp_path / "fork.db", key, 9, tag="b")
    fork.export(tmp_path / "fork.jsonl")
    with pytest.raises(VerificationError, match="not a prefix"):
        memory.verify(tmp_path / "fork.jsonl", key.public_key())
    # A swapped key with a log re-signed under it.
    other = Ed25519PrivateKey.generate()
    swapped = _log(tmp_path / "swap.db", other, 12)
    swapped.export(tmp_path / "swap.jsonl")
    with pytest.raises(VerificationError, match="key was replaced"):
        memory.verify(tmp_path / "swap.jsonl", other.public_key())
    recalled = memory.recall()
    assert recalled is not None and recalled.head.size == 9  # failures never move the memory
    assert memory.forget() and memory.recall() is None


def test_an_edited_memory_is_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    memory = VerifierMemory(tmp_path / "verifier")
    _log(tmp_path / "log.db", key, 3).export(tmp_path / "e.jsonl")
    memory.verify(tmp_path / "e.jsonl", key.public_key())
    path = memory.path("default")
    body = json.loads(path.read_text())
    body["head"]["size"] = 1  # shrink what the verifier remembers
    path.write_text(json.dumps(body))
    with pytest.raises(VerificationError, match="was edited"):
        memory.recall()
    with pytest.raises(VerificationError, match="log name"):
        memory.path("../etc")
    assert verifier_home({"SANDBOX_VERIFIER_HOME": str(tmp_path)}) == tmp_path


def test_witnesses_and_their_count_are_pinned(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    from policies.witness import Witness

    memory = VerifierMemory(tmp_path / "verifier")
    log = _log(tmp_path / "log.db", key, 4)
    witnesses = [Witness(tmp_path / f"{n}.db", n, Ed25519PrivateKey.generate()) for n in "ab"]

    def export(out: Path, cosigners: list[Witness]) -> Path:
        head = log.sign_tree_head()
        cos = []
        for w in cosigners:
            last = w.last(head.key_id)
            proof = [] if last is None else log.consistency_proof(last[0].size, head.size)
            cos.append(w.witness(head, proof, key.public_key(), 1))
        log.export(out, head=head, cosignatures=cos)
        return out

    keys = {w.name: w.public_key for w in witnesses}
    first = export(tmp_path / "1.jsonl", witnesses)
    verdict = memory.verify(first, key.public_key(), witness_keys=keys)  # no count: all of them
    assert verdict.log.witnesses == ("a", "b")
    pinned = memory.recall()
    assert (
        pinned is not None and pinned.min_witnesses == 2 and set(pinned.witness_keys) == {"a", "b"}
    )
    log.append("decision", {"firm": "z", "decision": "deny"})
    one = export(tmp_path / "2.jsonl", witnesses[:1])
    with pytest.raises(VerificationError, match="1 of the witnesses you trust .* 2 required"):
        memory.verify(one, key.public_key())  # the pinned witnesses are required unasked
    with pytest.raises(VerificationError, match="witness 'a' has key"):
        memory.verify(one, key.public_key(), witness_keys={"a": key.public_key()})
    with pytest.raises(VerificationError, match="only 2 witness keys are known"):
        memory.verify(one, key.public_key(), min_witnesses=3)
    both = export(tmp_path / "3.jsonl", witnesses)
    assert memory.verify(both, key.public_key(), min_witnesses=1).log.witnesses == ("a", "b")
    recalled = memory.recall()
    assert recalled is not None and recalled.min_witnesses == 2  # a count never drops
