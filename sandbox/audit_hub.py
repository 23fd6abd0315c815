"""``sandbox audit head|entries|proof --hub``: a regulator reads the hub's transparency log
through its profile (``sandbox audit export --hub`` writes the offline export format).
``--hub`` is accepted for symmetry with ``export --hub``; these commands always ask the hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.firm_cli import JsonOpt, ProfileOpt, call, echo_json, fail, profile_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from sandbox.client import RegulatorClient

HubOpt = Annotated[bool, typer.Option("--hub", help="ask the hub (the profile's)")]
KeyOpt = Annotated[
    Path | None, typer.Option("--public-key", help="the log's public key: check signatures")
]


def _client(profile: Path | None) -> RegulatorClient:
    from sandbox.client import RegulatorClient

    return call(lambda: RegulatorClient(profile_of(profile)))


def _key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    from policies.keys import load_public_key

    return call(lambda: load_public_key(path))


def head(
    hub: HubOpt = True,
    public_key: KeyOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A freshly signed tree head of the hub's log (signature checked with --public-key)."""
    from sandbox.client.regulator import _verified_head

    key = _key(public_key)
    with _client(profile) as regulator:
        sth = call(regulator.tree_head)
    if key is not None:
        call(lambda: _verified_head(sth, key))
    if as_json:
        echo_json(sth.to_json())
        return
    typer.echo(f"size {sth.size}, root {sth.root.hex()}, key {sth.key_id}")
    typer.echo("signature verified" if key else "signature not checked (give --public-key)")


def entries(
    start: Annotated[int, typer.Option(help="first index")] = 0,
    end: Annotated[int, typer.Option(help="one past the last index (0: to the end)")] = 0,
    hub: HubOpt = True,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log entries [start, end) from the hub (one page, at most 1000)."""
    if start < 0 or end < 0:
        fail("--start and --end must be 0 or more")
    with _client(profile) as regulator:
        page = call(lambda: regulator.entries(start, end))
    for entry in page.entries:
        if as_json:
            typer.echo(entry.entry.decode())
        else:
            body = entry.body()
            shown = {k: body[k] for k in ("kind", "firm", "dataset", "grant_id") if k in body}
            typer.echo(f"{entry.index:>8}  " + "  ".join(f"{k}={v}" for k, v in shown.items()))
    if not as_json:
        typer.echo(f"({len(page.entries)} entries; next {page.next} of {page.tree_size})")


def proof(
    index: Annotated[int, typer.Argument(help="the entry's index")],
    size: Annotated[int, typer.Option(help="the tree size (0: the current tree)")] = 0,
    hub: HubOpt = True,
    public_key: KeyOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An entry's inclusion proof from the hub, checked with --public-key."""
    from sandbox.client import check_inclusion

    if index < 0 or size < 0:
        fail("INDEX and --size must be 0 or more")
    key = _key(public_key)
    with _client(profile) as regulator:
        got = call(lambda: regulator.inclusion_proof(index, size))
    if key is not None:
        call(lambda: check_inclusion(got, key))
    if as_json:
        echo_json(
            {
                "index": got.index,
                "tree_size": got.tree_size,
                "audit_path": [p.hex() for p in got.audit_path],
                "entry": got.body(),
                "verified": key is not None,
            }
        )
        return
    typer.echo(f"entry {got.index} of {got.tree_size}: {len(got.audit_path)} hashes in its path")
    typer.echo("included under the signed head" if key else "not checked (give --public-key)")


def export_from_hub(out: Path, profile: Path | None, public_key: Path | None) -> None:
    if public_key is None:
        fail("--hub export needs --public-key (the log's public key) to check the signed head")
    key = _key(public_key)
    assert key is not None
    with _client(profile) as regulator:
        sth = call(lambda: regulator.export(out, key))
    typer.echo(f"exported {sth.size} entries from the hub to {out}")
    typer.echo(f"check it with: sandbox audit verify {out} --public-key {public_key}")


def hub_consistency(first: int, second: int, profile: Path | None) -> dict[str, object]:
    """A consistency proof file from the hub: its proof and signed head of ``second``, and
    the head it signed of size ``first`` (from an inclusion proof at that size)."""
    from policies.verify import consistency_proof_json

    with _client(profile) as regulator:
        got = call(lambda: regulator.consistency_proof(first, second))
        if got.tree_head is None:
            fail(f"the hub has no signed head of {got.second} entries; use --to 0")
        older = got.tree_head if first == got.second else None
        if older is None and first > 0:
            older = call(lambda: regulator.inclusion_proof(0, first)).tree_head
        if older is None:
            fail(f"the hub has no signed head of {first} entries; prove from a size it signed")
    return consistency_proof_json(older, got.tree_head, got.proof)


def hub_inclusion(index: int, size: int, profile: Path | None) -> dict[str, object]:
    """An inclusion proof file from the hub (the entry's bytes under its signed head)."""
    from policies.verify import inclusion_proof_json

    with _client(profile) as regulator:
        got = call(lambda: regulator.inclusion_proof(index, size))
    if got.tree_head is None:
        fail(f"the hub has no signed head of {got.tree_size} entries; use --size 0")
    return inclusion_proof_json(got.index, got.entry, got.tree_head, got.audit_path)


def mount_hub_commands(app: typer.Typer) -> None:
    for command in (head, entries, proof):
        app.command()(command)
