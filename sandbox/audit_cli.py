"""``sandbox audit``: what regulators run against the transparency log.

sandbox audit export OUT [--tree-head FILE]                  export the log with a signed head
sandbox audit verify FILE --public-key K [--previous FILE]   verify an export offline
sandbox audit show [--firm F] [--dataset D] [--decision permit|deny] [--since T] [--until T]

The state directory (``--state``, default ``$SANDBOX_STATE`` or ``./var``) holds ``log.db``
and ``keys/``; regulators receive ``keys/log-public.pem``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from policies import SignedTreeHead, TransparencyLog, VerificationError, verify_export
from policies.errors import PolicyError
from policies.keys import PUBLIC_KEY_FILE, load_or_create_signing_key, load_public_key
from policies.treehead import TreeHeadError

audit_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Regulators: export, verify and read the transparency log.",
)

StateOpt = Annotated[
    Path,
    typer.Option(
        "--state",
        envvar="SANDBOX_STATE",
        help="state directory with log.db and keys/ (default $SANDBOX_STATE or ./var)",
    ),
]


def _open_log(state: Path, *, signing: bool) -> TransparencyLog:
    db = state / "log.db"
    if not db.exists():
        typer.echo(
            f"error: no transparency log at {db}; pass --state or set SANDBOX_STATE", err=True
        )
        raise typer.Exit(code=2)
    key = load_or_create_signing_key(state / "keys") if signing else None
    return TransparencyLog(db, key)


def _time_ms(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(
            f"error: {option} {text!r} is not an ISO time like 2026-06-01T08:00+08:00", err=True
        )
        raise typer.Exit(code=2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@audit_app.command()
def export(
    out: Annotated[Path, typer.Argument(help="file to write the export to")],
    state: StateOpt = Path("var"),
    tree_head: Annotated[
        Path | None, typer.Option("--tree-head", help="also save the signed tree head here")
    ] = None,
) -> None:
    """Export every log entry and a freshly signed tree head."""
    try:
        sth = _open_log(state, signing=True).export(out)
    except PolicyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    head = json.dumps(sth.to_json(), sort_keys=True)
    if tree_head is not None:
        tree_head.write_text(head + "\n")
    typer.echo(f"exported {sth.size} entries to {out}")
    typer.echo(f"public key: {state / 'keys' / PUBLIC_KEY_FILE}")
    typer.echo(f"tree head: {head}")


@audit_app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="an export written by `sandbox audit export`")],
    public_key: Annotated[Path, typer.Option("--public-key", help="the log's public key (PEM)")],
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="a tree head you kept earlier: the log must extend it"),
    ] = None,
) -> None:
    """Verify every entry, the tree head signature and consistency with an earlier head."""
    try:
        key = load_public_key(public_key)
        earlier = None
        if previous is not None:
            earlier = SignedTreeHead.from_json(json.loads(previous.read_text()))
        result = verify_export(file, key, earlier)
    except (VerificationError, TreeHeadError, PolicyError, OSError, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"OK: {result.size} entries, root {result.root.hex()}")
    typer.echo(f"tree head signed by key {result.tree_head.key_id}")
    if result.previous is not None:
        typer.echo(f"extends the earlier tree head of size {result.previous.size}")


@audit_app.command()
def show(
    state: StateOpt = Path("var"),
    firm: Annotated[str | None, typer.Option(help="only entries about this firm")] = None,
    dataset: Annotated[str | None, typer.Option(help="only entries about this dataset")] = None,
    decision: Annotated[str | None, typer.Option(help="permit or deny")] = None,
    kind: Annotated[str | None, typer.Option(help="request, decision, release, ...")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    limit: Annotated[int, typer.Option(help="at most this many entries")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON entry per line")] = False,
) -> None:
    """List log entries matching every filter given, oldest first."""
    if decision is not None and decision not in ("permit", "deny"):
        typer.echo(f"error: --decision must be permit or deny, not {decision!r}", err=True)
        raise typer.Exit(code=2)
    entries = _open_log(state, signing=False).search(
        kind=kind,
        firm=firm,
        dataset=dataset,
        decision=decision,
        since_ms=_time_ms(since, "--since"),
        until_ms=_time_ms(until, "--until"),
        limit=limit,
    )
    for entry in entries:
        typer.echo(
            json.dumps(entry, ensure_ascii=False, sort_keys=True) if as_json else _row(entry)
        )
    if not as_json:
        typer.echo(f"({len(entries)} entries)")


def _row(entry: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(entry["ts_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    parts = [f"{entry['index']:>8}", when, f"{entry['kind']:<11}"]
    for key in ("firm", "dataset", "decision", "grant_id", "release_sha256"):
        if entry.get(key) is not None:
            parts.append(f"{key}={entry[key]}")
    if entry.get("reasons"):
        parts.append("reasons=" + ",".join(r["code"] for r in entry["reasons"]))
    return "  ".join(parts)
