"""The transparency log store, its proofs, its export and the offline verifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from policies import merkle
from policies.keys import load_or_create_signing_key
from policies.log import TransparencyLog
from policies.treehead import SignedTreeHead
from policies.verify import VerificationError, verify_export


@pytest.fixture
def log(tmp_path: Path) -> TransparencyLog:
    key = load_or_create_signing_key(tmp_path / "keys")
    return TransparencyLog(tmp_path / "log.db", key, clock=lambda: 1_700_000_000.0)


def _fill(log: TransparencyLog, n: int) -> None:
    log.append_many(
        [
            ("decision", {"firm": f"f{i % 3}", "dataset": "d", "decision": "permit"})
            for i in range(n)
        ]
    )


def test_store_root_and_proofs_match_recomputation(log: TransparencyLog) -> None:
    _fill(log, 45)
    entries = list(log.entries())
    assert len(entries) == 45
    for size in (1, 2, 7, 16, 31, 45):
        root = log.root(size)
        assert root == merkle.root_of(entries[:size])
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(entries[index]), proof, root)
        for first in range(size + 1):
            proof = log.consistency_proof(first, size)
            merkle.verify_consistency(first, size, log.root(first), root, proof)


def test_entries_are_canonical_json_with_their_index(log: TransparencyLog) -> None:
    index = log.append("grant", {"grant_id": "g-1", "purpose": "统计分析"})
    data = log.entry(index)
    body = json.loads(data)
    assert body == {
        "grant_id": "g-1",
        "purpose": "统计分析",
        "index": 0,
        "kind": "grant",
        "ts_ms": 1_700_000_000_000,
    }
    assert (
        data == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def test_bad_entries_are_refused_and_cost_nothing(log: TransparencyLog) -> None:
    with pytest.raises(ValueError, match="unknown log entry kind"):
        log.append("gossip", {})
    with pytest.raises(ValueError, match="set by the log"):
        log.append("policy", {"index": 3})
    with pytest.raises(ValueError, match="JSON"):
        log.append("policy", {"x": object()})
    assert log.size == 0


def test_concurrent_appends_get_distinct_indices(log: TransparencyLog) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(40):
            index = log.append("request", {"firm": f"t{t}", "n": i})
            with lock:
                got.append(index)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(320))
    assert log.root() == merkle.root_of(log.entries())


def test_search_filters(log: TransparencyLog) -> None:
    _fill(log, 9)
    log.append("decision", {"firm": "f1", "dataset": "other", "decision": "deny"})
    assert len(log.search(firm="f1")) == 4
    assert [e["index"] for e in log.search(decision="deny")] == [9]
    assert len(log.search(dataset="d", firm="f0")) == 3
    assert log.search(since_ms=1_700_000_000_001) == []


def _export(log: TransparencyLog, tmp_path: Path, name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    log.export(path)
    return path


def test_export_verifies_offline(log: TransparencyLog, tmp_path: Path) -> None:
    _fill(log, 5)
    earlier = log.sign_tree_head()
    _fill(log, 4)
    path = _export(log, tmp_path)
    public = load_or_create_signing_key(tmp_path / "keys").public_key()
    result = verify_export(path, public, previous=earlier)
    assert result.size == 9
    assert result.root == log.root()


def test_every_single_byte_change_is_detected(log: TransparencyLog, tmp_path: Path) -> None:
    _fill(log, 4)
    path = _export(log, tmp_path)
    public = load_or_create_signing_key(tmp_path / "keys").public_key()
    original = path.read_bytes()
    tampered = tmp_path / "tampered.jsonl"
    for position in range(len(original)):
        changed = bytearray(original)
        changed[position] = (changed[position] + 1) % 256
        tampered.write_bytes(bytes(changed))
        with pytest.raises(VerificationError):
            verify_export(tampered, public)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:2] + ls[3:], "deleted, inserted or reordered"),
        (lambda ls: ls[:2] + [ls[3], ls[2]] + ls[4:], "deleted, inserted or reordered"),
        (lambda ls: ls[:3] + [ls[3]] + ls[3:], "deleted, inserted or reordered"),
        (lambda ls: ls[:-2] + ls[-1:], "entries were deleted"),
        (lambda ls: ls + [ls[1]], "is not a cosignature"),
    ],
    ids=["delete", "reorder", "insert-duplicate", "delete-last", "append-after-head"],
)
def test_structural_tampering_is_detected(
    log: TransparencyLog, tmp_path: Path, edit: object, message: str
) -> None:
    _fill(log, 6)
    path = _export(log, tmp_path)
    public = load_or_create_signing_key(tmp_path / "keys").public_key()
    path.write_bytes(b"".join(edit(_lines(path))))  # type: ignore[operator]
    with pytest.raises(VerificationError, match=message):
        verify_export(path, public)


def test_rewritten_entry_with_renumbered_header_is_detected(
    log: TransparencyLog, tmp_path: Path
) -> None:
    """An insider deletes entry 2, renumbers the rest and fixes the header: the signature fails."""
    _fill(log, 6)
    path = _export(log, tmp_path)
    public = load_or_create_signing_key(tmp_path / "keys").public_key()
    lines = _lines(path)
    body = [json.loads(x) for x in lines[1:-1]]
    del body[2]
    for i, entry in enumerate(body):
        entry["index"] = i
    new = [
        json.dumps(
            {"format": json.loads(lines[0])["format"], "size": 5},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        + b"\n"
    ]
    new += [json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in body]
    head = json.loads(lines[-1])
    head["tree_head"]["size"] = 5
    head["tree_head"]["root"] = merkle.root_of([x[:-1] for x in new[1:]]).hex()
    new.append(json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    path.write_bytes(b"".join(new))
    with pytest.raises(VerificationError, match="not signed by key"):
        verify_export(path, public)


def test_tree_head_not_extending_earlier_one_is_detected(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path / "keys")
    log = TransparencyLog(tmp_path / "log.db", key)
    _fill(log, 5)
    earlier = log.sign_tree_head()
    # A fork: the same key signs a different history of the same length and more.
    fork = TransparencyLog(tmp_path / "fork.db", key)
    fork.append_many([("decision", {"firm": "x", "decision": "permit"})] * 8)
    path = _export(fork, tmp_path, "fork.jsonl")
    with pytest.raises(VerificationError, match="not a prefix"):
        verify_export(path, key.public_key(), previous=earlier)
    # A shorter log than one already seen: truncated.
    short = TransparencyLog(tmp_path / "short.db", key)
    _fill(short, 3)
    with pytest.raises(VerificationError, match="truncated"):
        verify_export(_export(short, tmp_path, "short.jsonl"), key.public_key(), previous=earlier)
    # A forged earlier head (signature does not verify).
    forged = SignedTreeHead(
        earlier.size, bytes(32), earlier.timestamp_ms, earlier.key_id, earlier.signature
    )
    with pytest.raises(VerificationError, match="earlier tree head"):
        verify_export(_export(log, tmp_path), key.public_key(), previous=forged)


def test_wrong_public_key_is_detected(log: TransparencyLog, tmp_path: Path) -> None:
    _fill(log, 3)
    path = _export(log, tmp_path)
    other = load_or_create_signing_key(tmp_path / "other-keys").public_key()
    with pytest.raises(VerificationError, match="not signed by key"):
        verify_export(path, other)


def test_private_key_is_owner_only(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path / "keys")
    path = tmp_path / "keys" / "log-signing.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        load_or_create_signing_key(tmp_path / "keys")


def test_processes_appending_to_one_log_keep_a_valid_tree(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    TransparencyLog(db)  # create the schema once
    worker = Path(__file__).parent / "ledger_worker.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [
        subprocess.Popen([sys.executable, str(worker), "append", str(db), "150"], env=env)
        for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    log = TransparencyLog(db)
    entries = list(log.entries())
    assert [json.loads(e)["index"] for e in entries] == list(range(450))
    assert log.root() == merkle.root_of(entries)
    for index in (0, 149, 300, 449):
        proof = log.inclusion_proof(index)
        merkle.verify_inclusion(index, 450, merkle.leaf_hash(entries[index]), proof, log.root())


@pytest.mark.parametrize("size", ['"3"', "-1", "true", "1e3", "null"])
def test_malformed_header_size_is_reported(log: TransparencyLog, tmp_path: Path, size: str) -> None:
    _fill(log, 3)
    path = _export(log, tmp_path)
    lines = _lines(path)
    lines[0] = lines[0].replace(b'"size":3', b'"size":' + size.encode())
    path.write_bytes(b"".join(lines))
    public = load_or_create_signing_key(tmp_path / "keys").public_key()
    with pytest.raises(VerificationError, match="line 1"):
        verify_export(path, public)
