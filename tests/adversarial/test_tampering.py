"""Ten attacks on the transparency log, each caught by the DEFAULT `sandbox audit verify`.

The regulator verifies once with the witnesses it trusts (pinning the authority's key, the
head, the two witnesses and "2 of 2"), verifies a later export with no option but the public
key, and then receives a tampered export. Every attack below is verified exactly the way a
regulator would by default: ``sandbox audit verify FILE --public-key K``, the verifier's
memory in a temporary home. 10 of 10 attacks fail (exit 1, one ``FAILED:`` line naming what is
wrong); the untampered log passes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "policies"))

from policy_helpers import NOW, credit_grant, query, tax_dataset  # noqa: E402

from policies import Authority, default_keys_dir  # noqa: E402
from policies.errors import WitnessError  # noqa: E402
from policies.keys import public_key_pem  # noqa: E402
from policies.log import TransparencyLog  # noqa: E402
from policies.treehead import SignedTreeHead  # noqa: E402
from policies.witness import Cosignature, Witness  # noqa: E402
from sandbox.audit_cli import audit_app  # noqa: E402

app = typer.Typer()
app.add_typer(audit_app, name="audit")
runner = CliRunner()


def _spend(authority: Authority, n: int, firm: str = "acme") -> None:
    """``n`` permitted queries of 0.5 epsilon, each reserved and released."""
    for i in range(n):
        decision = authority.decide(query(firm=firm))
        assert decision.permit, decision.reasons
        authority.commit(authority.reserve(decision), f'{{"answer": {i}}}'.encode())
    authority.decide(query(purpose="marketing"))  # and one deny


def _snapshot(src: Path, dst: Path) -> None:
    dst.mkdir(mode=0o700)
    with sqlite3.connect(src / "state.db") as a, sqlite3.connect(dst / "state.db") as b:
        a.backup(b)


@dataclass
class World:
    tmp: Path
    authority: Authority
    witnesses: list[Witness]
    public_key: Path
    e1: Path
    e2: Path
    e3: Path
    fork_state: Path

    def publish(self, out: Path, authority: Authority | None = None) -> SignedTreeHead:
        """Sign a head, have every witness cosign it, and export the log under it."""
        authority = authority or self.authority
        head = authority.tree_head()
        cosignatures = [self.cosign(w, head, authority) for w in self.witnesses]
        authority.log.export(out, head=head, cosignatures=cosignatures)
        return head

    @staticmethod
    def cosign(witness: Witness, head: SignedTreeHead, authority: Authority) -> Cosignature:
        last = witness.last(head.key_id)
        proof = [] if last is None else authority.consistency_proof(last[0].size, head.size)
        return witness.witness(head, proof, authority.public_key, int(NOW * 1000))

    def verify(self, export: Path, *options: str) -> tuple[int, str]:
        """``sandbox audit verify EXPORT --public-key K`` (plus ``options``)."""
        args = ["audit", "verify", str(export), "--public-key", str(self.public_key), *options]
        result = runner.invoke(app, args)
        return result.exit_code, result.output


@pytest.fixture
def world(tmp_path: Path) -> World:
    authority = Authority(tmp_path / "state", clock=lambda: NOW)
    authority.register_dataset(tax_dataset())
    authority.create_grant(credit_grant())
    witnesses = [
        Witness(tmp_path / f"{name}.db", name, Ed25519PrivateKey.generate())
        for name in ("jinan-node", "qingdao-node")
    ]
    pems = []
    for witness in witnesses:
        pem = tmp_path / f"{witness.name}.pem"
        pem.write_bytes(public_key_pem(witness.public_key))
        pems += ["--witness", f"{witness.name}={pem}"]
    w = World(
        tmp_path,
        authority,
        witnesses,
        default_keys_dir(authority.state_dir) / "log-public.pem",
        tmp_path / "e1.jsonl",
        tmp_path / "e2.jsonl",
        tmp_path / "e3.jsonl",
        tmp_path / "fork-state",
    )
    _spend(authority, 2)
    w.publish(w.e1)
    code, out = w.verify(w.e1, *pems)  # the first verification pins key, head and witnesses
    assert code == 0 and "first verification" in out and "jinan-node, qingdao-node" in out, out
    _spend(authority, 1)
    w.publish(w.e2)
    code, out = w.verify(w.e2)  # later: no option but the key
    assert code == 0 and "extends the" in out, out
    _snapshot(authority.state_dir, w.fork_state)  # an insider's copy, for the fork
    _spend(authority, 1)
    w.publish(w.e3)
    return w


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _entry_lines(path: Path) -> tuple[list[bytes], int]:
    lines = _lines(path)
    return lines, json.loads(lines[0])["size"]


# -- the attacks: each returns the file the regulator is handed ------------------------------


def byte_flip(w: World) -> Path:
    lines, size = _entry_lines(w.e3)
    target = next(i for i in range(1, size + 1) if b'"release_sha256"' in lines[i])
    at = lines[target].index(b'"release_sha256":"') + len(b'"release_sha256":"')
    line = bytearray(lines[target])
    line[at] = ord("0") if line[at] != ord("0") else ord("1")
    lines[target] = bytes(line)
    w.e3.write_bytes(b"".join(lines))
    return w.e3


def delete(w: World) -> Path:
    lines, size = _entry_lines(w.e3)
    denied = next(i for i in range(1, size + 1) if b'"decision":"deny"' in lines[i])
    del lines[denied]  # hide a refused request, and fix the header's count
    lines[0] = lines[0].replace(f'"size":{size}'.encode(), f'"size":{size - 1}'.encode())
    w.e3.write_bytes(b"".join(lines))
    return w.e3


def reorder(w: World) -> Path:
    lines, size = _entry_lines(w.e3)
    lines[size - 1], lines[size] = lines[size], lines[size - 1]
    w.e3.write_bytes(b"".join(lines))
    return w.e3


def truncate(w: World) -> Path:
    """An insider with the signing key cuts the log's last entries and exports it signed."""
    size = w.authority.log.size
    keep = json.loads(_lines(w.e1)[0])["size"] - 2
    with sqlite3.connect(w.authority.state_dir / "state.db") as db:
        db.execute("DELETE FROM entries WHERE idx >= ?", (keep,))
        db.execute("UPDATE meta SET size = ?", (keep,))
    assert w.authority.log.size == keep < size
    out = w.tmp / "truncated.jsonl"
    w.authority.log.export(out)  # a valid signature over the recomputed, shorter root
    return out


def fork(w: World) -> Path:
    """A split view: the insider's copy (taken after the head the regulator verified last)
    grows another way. It extends that head, but the witnesses, who saw the real log, refuse
    to cosign it, so it is exported without their cosignatures."""
    other = Authority(w.fork_state, clock=lambda: NOW, keys_dir=w.authority.keys_dir)
    _spend(other, 1, firm="acme")
    other.decide(query(purpose="credit-risk-statistics", epsilon=0.25))
    head = other.tree_head()
    for witness in w.witnesses:
        with pytest.raises(WitnessError, match="fork|does not extend"):
            w.cosign(witness, head, other)
    out = w.tmp / "fork.jsonl"
    other.log.export(out, head=head)
    return out


def key_swap(w: World) -> Path:
    """Entries rewritten (a deny dropped) and re-signed with a new key shipped beside them."""
    key = Ed25519PrivateKey.generate()
    forged = TransparencyLog(w.tmp / "forged.db", key)
    kept = [
        json.loads(line)
        for line in _lines(w.e3)[1 : 1 + w.authority.log.size]
        if b'"decision":"deny"' not in line
    ]
    for entry in kept:
        forged.append(
            entry.pop("kind"), {k: v for k, v in entry.items() if k not in ("index", "ts_ms")}
        )
    out = w.tmp / "swapped.jsonl"
    forged.export(out)
    w.public_key = w.tmp / "swapped-public.pem"
    w.public_key.write_bytes(public_key_pem(key.public_key()))
    return out


def ledger_reset(w: World) -> Path:
    """The budget ledger is zeroed in the state database while the authority runs; it then
    lets the firm spend past the grant's cap (3.0: 2.0 before the reset, 2.5 after). Every
    entry is genuine and the witnesses cosign: the export's budget replay catches it."""
    with sqlite3.connect(w.authority.state_dir / "state.db") as db:
        db.execute(
            "UPDATE accounts SET basic_eps = 0, basic_delta = 0, rho = 0, zcdp_delta = 0, "
            "n_reserved = 0, n_committed = 0, n_refunded = 0, n_withheld = 0"
        )
        db.execute("DELETE FROM reservations")
    _spend(w.authority, 5)
    check = runner.invoke(app, ["audit", "check", "--state", str(w.authority.state_dir)])
    assert check.exit_code == 1 and "reset or edited" in check.output  # with the state, too
    out = w.tmp / "after-reset.jsonl"
    w.publish(out)
    return out


def replaced_export(w: World) -> Path:
    """Another history under the same key (the state replaced by a rebuilt one)."""
    other = Authority(w.tmp / "rebuilt", clock=lambda: NOW, keys_dir=w.authority.keys_dir)
    other.register_dataset(tax_dataset())
    other.create_grant(credit_grant())
    _spend(other, 6)
    out = w.tmp / "replaced.jsonl"
    other.log.export(out)
    return out


def dropped_witness(w: World) -> Path:
    lines = _lines(w.e3)
    assert sum(b'"cosignature"' in line for line in lines) == 2
    w.e3.write_bytes(b"".join(lines[:-1]))
    return w.e3


def rolled_back(w: World) -> Path:
    """The export the regulator verified first, fully valid and cosigned, handed out again
    as if it were the current log."""
    return w.e1


ATTACKS: dict[str, tuple[Callable[[World], Path], str]] = {
    "byte flip": (byte_flip, "do not hash to the signed root"),
    "delete": (delete, "where entry .* belongs"),
    "reorder": (reorder, "where entry .* belongs"),
    "truncate": (truncate, "truncated"),
    "fork": (fork, "0 of the witnesses you trust .* split view"),
    "key swap": (key_swap, "key was replaced"),
    "ledger reset": (ledger_reset, "budget does not add up: .* past its cap"),
    "replaced export": (replaced_export, "not a prefix of this log"),
    "dropped witness signature": (dropped_witness, "1 of the witnesses you trust .* 2 required"),
    "rolled-back head": (rolled_back, "rolled back"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_default_verify_catches(world: World, attack: str) -> None:
    tamper, expected = ATTACKS[attack]
    code, out = world.verify(tamper(world))
    assert code == 1, out
    assert out.startswith("FAILED: ") and out.count("\n") == 1, out
    assert re.search(expected, out), out


def test_the_untampered_log_passes_and_the_memory_moves_on(world: World) -> None:
    code, out = world.verify(world.e3)
    assert code == 0, out
    assert "cosigned by witnesses: jinan-node, qingdao-node" in out
    assert "the budget entries add up" in out
    assert world.verify(world.e3)[0] == 0  # the same log again
    assert world.verify(world.e2)[0] == 1  # an older one no longer passes
