"""``sandbox audit``: what regulators run against the transparency log.

sandbox audit export OUT [--tree-head FILE]                  export the log with a signed head
sandbox audit verify FILE --public-key K [--previous FILE]   verify an export offline
sandbox audit check                                          the ledger equals what the log implies
sandbox audit show [--firm F] [--dataset D] [--decision permit|deny] [--since T] [--until T]

The state directory (``--state``, default ``$SANDBOX_STATE`` or ``./var``) holds ``state.db``;
the signing key lives apart in ``--keys`` (default ``$SANDBOX_KEYS`` or ``<state>-keys``),
and regulators receive its ``log-public.pem``. Every failure is one line on stderr and a
non-zero exit code: 1 when a verification or check fails, 2 for unusable input or state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from policies.errors import (
    LedgerMismatchError,
    PolicyError,
    TreeHeadError,
    VerificationError,
)
from sandbox.audit_hub import export_from_hub, mount_hub_commands
from sandbox.firm_cli import ProfileOpt

if TYPE_CHECKING:
    from policies.db import Database
    from policies.log import TransparencyLog

#: The state database's file name (``policies.authority.DB_FILE``; the engine is imported only
#: by the commands that read the state, so `sandbox query` does not load it).
DB_FILE = "state.db"
PUBLIC_KEY_FILE = "log-public.pem"

audit_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Regulators: export, verify, check and read the transparency log.",
)

StateOpt = Annotated[
    Path,
    typer.Option(
        "--state",
        envvar="SANDBOX_STATE",
        help=f"state directory with {DB_FILE} (default $SANDBOX_STATE or ./var)",
    ),
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        envvar="SANDBOX_KEYS",
        help="directory of the log signing key (default $SANDBOX_KEYS or <state>-keys)",
    ),
]

_T = TypeVar("_T")
#: What a command reports as one line instead of a traceback.
_EXPECTED = (
    PolicyError,
    VerificationError,
    TreeHeadError,
    OSError,
    sqlite3.Error,
    ValueError,
    OverflowError,
)


def _fail(message: str, code: int = 2, prefix: str = "error") -> NoReturn:
    typer.echo(f"{prefix}: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code=code)


def _guard(action: Callable[[], _T], prefix: str = "error", code: int = 2) -> _T:
    try:
        return action()
    except typer.Exit:
        raise
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _fail(f"cannot use{where}: {exc.strerror or exc}", code, prefix)
    except sqlite3.Error as exc:
        _fail(f"the state database cannot be read ({exc})", code, prefix)
    except _EXPECTED as exc:
        _fail(str(exc), code, prefix)
    except RecursionError:
        _fail("the input is nested too deeply", code, prefix)


def _database(state: Path) -> Database:
    from policies.db import Database

    db = state / DB_FILE
    if not db.is_file():
        _fail(f"no transparency log at {db}; pass --state or set SANDBOX_STATE")
    return Database(db)


def _open_log(state: Path, keys: Path | None, *, signing: bool) -> TransparencyLog:
    from policies.authority import default_keys_dir
    from policies.keys import load_signing_key
    from policies.log import TransparencyLog

    log = TransparencyLog(_database(state))
    if signing:
        log._key = load_signing_key(keys or default_keys_dir(state))
    return log


def _time_ms(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option} {text!r} is not an ISO time like 2026-06-01T08:00+08:00")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@audit_app.command()
def export(
    out: Annotated[Path, typer.Argument(help="file to write the export to")],
    state: StateOpt = Path("var"),
    keys: KeysOpt = None,
    tree_head: Annotated[
        Path | None, typer.Option("--tree-head", help="also save the signed tree head here")
    ] = None,
    hub: Annotated[bool, typer.Option("--hub", help="export from the hub (profile)")] = False,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="with --hub: the log's public key")
    ] = None,
    profile: ProfileOpt = None,
) -> None:
    """Export every log entry and a freshly signed tree head (from the local state, or with
    --hub from the hub through the profile)."""
    if hub:
        export_from_hub(out, profile, public_key)
        return
    sth = _guard(lambda: _open_log(state, keys, signing=True).export(out))
    head = json.dumps(sth.to_json(), sort_keys=True)
    if tree_head is not None:
        _guard(lambda: tree_head.write_text(head + "\n"))
    typer.echo(f"exported {sth.size} entries to {out}")
    from policies.authority import default_keys_dir

    typer.echo(f"public key: {(keys or default_keys_dir(state)) / PUBLIC_KEY_FILE}")
    typer.echo(f"tree head: {head}")


def _replay_export(file: Path) -> None:
    """Replay the budget of a verified export: every release and refund of a reservation
    made before, each resolved once, no reservation past its account's cap."""
    from policies.replay import replay

    with open(file, "rb") as f:
        f.readline()
        entries = []
        for line in f:
            body = json.loads(line)
            if isinstance(body, dict) and "kind" in body:
                entries.append(body)
    try:
        replay(entries)
    except LedgerMismatchError as exc:
        raise VerificationError(f"the log's budget does not add up: {exc}") from None


@audit_app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="an export written by `sandbox audit export`")],
    public_key: Annotated[Path, typer.Option("--public-key", help="the log's public key (PEM)")],
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="a tree head you kept earlier: the log must extend it"),
    ] = None,
) -> None:
    """Verify every entry, the tree head signature, consistency with an earlier head, and
    that the budget entries add up (each release and refund of one earlier reservation)."""

    def run() -> Any:
        from policies.keys import load_public_key
        from policies.treehead import SignedTreeHead
        from policies.verify import verify_export

        key = load_public_key(public_key)
        earlier = None
        if previous is not None:
            earlier = SignedTreeHead.from_json(json.loads(previous.read_text()))
        result = verify_export(file, key, earlier)
        _replay_export(file)
        return result

    result = _guard(run, prefix="FAILED", code=1)
    typer.echo(f"OK: {result.size} entries, root {result.root.hex()}")
    typer.echo(f"tree head signed by key {result.tree_head.key_id}")
    if result.previous is not None:
        typer.echo(f"extends the earlier tree head of size {result.previous.size}")


@audit_app.command()
def check(state: StateOpt = Path("var")) -> None:
    """Check that the budget ledger is exactly what the transparency log implies."""
    from policies.replay import ledger_differences

    differences = _guard(lambda: ledger_differences(_database(state)))
    if differences:
        _fail(
            f"the budget ledger does not match the log ({differences[0]}); it was reset or "
            "edited outside the authority",
            code=1,
            prefix="FAILED",
        )
    typer.echo("OK: the budget ledger matches the transparency log")


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
        _fail(f"--decision must be permit or deny, not {decision!r}")
    if limit < 0:
        _fail("--limit must be 0 or more")
    since_ms, until_ms = _time_ms(since, "--since"), _time_ms(until, "--until")
    entries = _guard(
        lambda: _open_log(state, None, signing=False).search(
            kind=kind,
            firm=firm,
            dataset=dataset,
            decision=decision,
            since_ms=since_ms,
            until_ms=until_ms,
            limit=limit,
        )
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


mount_hub_commands(audit_app)
