"""Witnesses cosign only consistent extensions; exports carry cosignatures; k of n verify."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.errors import LogIntegrityError, WitnessError
from policies.keys import load_or_create_signing_key
from policies.log import TransparencyLog
from policies.treehead import sign_tree_head
from policies.verify import VerificationError, verify_export
from policies.witness import Witness

NOW = 1_700_000_000_000


def _log(path: Path, key: Ed25519PrivateKey) -> TransparencyLog:
    return TransparencyLog(path, key, clock=lambda: NOW / 1000)


def _fill(log: TransparencyLog, n: int, tag: str = "a") -> None:
    log.append_many([("decision", {"firm": f"{tag}{i}", "decision": "permit"}) for i in range(n)])


@pytest.fixture
def authority(tmp_path: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key(tmp_path / "keys")


@pytest.fixture
def log(tmp_path: Path, authority: Ed25519PrivateKey) -> TransparencyLog:
    return _log(tmp_path / "log.db", authority)


def _witness(tmp_path: Path, name: str) -> Witness:
    return Witness(tmp_path / f"{name}.db", name, Ed25519PrivateKey.generate())


def test_a_witness_cosigns_each_consistent_extension(
    tmp_path: Path, log: TransparencyLog, authority: Ed25519PrivateKey
) -> None:
    w = _witness(tmp_path, "jinan")
    _fill(log, 5)
    first = log.sign_tree_head()
    cos = w.witness(first, [], authority.public_key(), NOW)
    assert cos.covers(first) and cos.witness == "jinan"
    _fill(log, 7)
    second = log.sign_tree_head()
    proof = log.consistency_proof(5, 12)
    assert w.witness(second, proof, authority.public_key(), NOW).size == 12
    assert w.witness(second, [], authority.public_key(), NOW).covers(second)  # same head again
    last = w.last(first.key_id)
    assert last is not None and last[0] == second


def test_a_witness_refuses_forks_truncation_and_foreign_heads(
    tmp_path: Path, log: TransparencyLog, authority: Ed25519PrivateKey
) -> None:
    w = _witness(tmp_path, "qingdao")
    _fill(log, 6)
    head = log.sign_tree_head()
    w.witness(head, [], authority.public_key(), NOW)
    fork = _log(tmp_path / "fork.db", authority)
    _fill(fork, 6, tag="b")  # same size, other entries, same key: a split view
    with pytest.raises(WitnessError, match="fork"):
        w.witness(fork.sign_tree_head(), [], authority.public_key(), NOW)
    _fill(fork, 4, tag="c")  # a longer fork: its proof cannot connect to the witnessed root
    with pytest.raises(WitnessError, match="does not extend"):
        w.witness(fork.sign_tree_head(), fork.consistency_proof(6, 10), authority.public_key(), NOW)
    short = _log(tmp_path / "short.db", authority)
    _fill(short, 3)
    with pytest.raises(WitnessError, match="shrank"):
        w.witness(short.sign_tree_head(), [], authority.public_key(), NOW)
    other = Ed25519PrivateKey.generate()
    forged = sign_tree_head(other, head.size, head.root, head.timestamp_ms)
    with pytest.raises(WitnessError, match="not signed"):
        w.witness(forged, [], authority.public_key(), NOW)
    assert w.last(head.key_id) is not None and w.last(head.key_id)[0] == head  # type: ignore[index]


def test_exports_carry_cosignatures_and_verify_k_of_n(
    tmp_path: Path, log: TransparencyLog, authority: Ed25519PrivateKey
) -> None:
    witnesses = [_witness(tmp_path, n) for n in ("jinan", "qingdao", "rizhao")]
    _fill(log, 9)
    head = log.sign_tree_head()
    cosigs = [w.witness(head, [], authority.public_key(), NOW) for w in witnesses[:2]]
    out = tmp_path / "export.jsonl"
    log.export(out, head, cosigs)
    keys = {w.name: w.public_key for w in witnesses}
    result = verify_export(out, authority.public_key(), witness_keys=keys, min_witnesses=2)
    assert result.witnesses == ("jinan", "qingdao") and result.size == 9
    with pytest.raises(VerificationError, match="2 of the witnesses .* 3 required"):
        verify_export(out, authority.public_key(), witness_keys=keys, min_witnesses=3)
    # A dropped cosignature line: one witness short.
    lines = out.read_bytes().splitlines(keepends=True)
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(VerificationError, match="1 of the witnesses"):
        verify_export(dropped, authority.public_key(), witness_keys=keys, min_witnesses=2)
    # An edited cosignature does not count, and says why.
    body = json.loads(lines[-1])
    body["cosignature"]["timestamp_ms"] += 1
    edited = tmp_path / "edited.jsonl"
    line = json.dumps(body, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    edited.write_bytes(b"".join(lines[:-1]) + line)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_export(edited, authority.public_key(), witness_keys=keys, min_witnesses=2)
    # An unknown witness's cosignature is ignored, not counted.
    assert verify_export(out, authority.public_key(), witness_keys={}).witnesses == ()


def test_export_signs_the_root_recomputed_from_the_entries(
    tmp_path: Path, log: TransparencyLog
) -> None:
    _fill(log, 4)
    head = log.sign_tree_head()
    db = sqlite3.connect(tmp_path / "log.db")
    db.execute(
        "UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), 'a1', 'zz') AS BLOB) "
        "WHERE idx = 1"
    )
    db.commit()
    db.close()
    with pytest.raises(LogIntegrityError, match="edited"):
        log.export(tmp_path / "out.jsonl", head)
    log.export(tmp_path / "fresh.jsonl")  # signs what the entries now hash to ...
    stored = {h.root for h in log.tree_heads()}
    assert head.root in stored and len(stored) == 2  # ... a root differing from the old head
    assert not (tmp_path / "out.jsonl").exists()
