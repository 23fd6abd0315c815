"""``sandbox audit``: what regulators run against the transparency log.

sandbox audit export OUT [--tree-head FILE]                  export the log with a signed head
sandbox audit verify FILE --public-key K [--log NAME] [--witness NAME=PEM] [--min-witnesses K]
                                                             verify an export (or a proof file)
                                                             against the verifier's memory
sandbox audit forget [--log NAME]                            drop what the memory pinned
sandbox audit prove --from N [--to M] / inclusion INDEX      RFC 9162 proofs as JSON
sandbox audit check                                          the ledger equals what the log implies
sandbox audit show [--export FILE --public-key K] [--firm F] [--dataset D] [--kind K] ...

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
from sandbox.audit_hub import export_from_hub, hub_consistency, hub_inclusion, mount_hub_commands
from sandbox.firm_cli import ProfileOpt

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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


HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--verifier-home",
        envvar="SANDBOX_VERIFIER_HOME",
        help="your verifier's memory (default ~/.config/sandbox/verifier)",
    ),
]
LogOpt = Annotated[
    str,
    typer.Option(
        "--log",
        help="the name your verifier remembers this log under (default: default)",
    ),
]


def _witness_keys(pairs: list[str]) -> dict[str, Ed25519PublicKey]:
    from policies.keys import load_public_key

    keys: dict[str, Ed25519PublicKey] = {}
    for pair in pairs:
        name, sep, pem = pair.partition("=")
        if not sep or not name or not pem:
            raise VerificationError(f"--witness {pair!r}: write it as NAME=PEMFILE")
        keys[name] = load_public_key(Path(pem))
    return keys


def _verify_proof_file(body: dict[str, Any], public_key: Path, log: str, home: Path | None) -> None:
    from policies.keys import key_id, load_public_key
    from policies.verifier_memory import VerifierMemory
    from policies.verify import verify_proof

    def run() -> Any:
        key = load_public_key(public_key)
        pinned = VerifierMemory(home).recall(log)
        if pinned is not None and pinned.key_id != key_id(key):
            raise VerificationError(
                f"this proof is checked with key {key_id(key)}, but you pinned key "
                f"{pinned.key_id} for log {log!r}: the key was replaced"
            )
        return verify_proof(body, key)

    proof = _guard(run, prefix="FAILED", code=1)
    if proof.kind == "consistency":
        first, second = proof.heads
        typer.echo(
            f"OK: consistency proof: the log of {second.size} entries (root "
            f"{second.root.hex()}) extends the one of {first.size} entries (root "
            f"{first.root.hex()}); both heads signed by key {second.key_id}"
        )
    else:
        (head,) = proof.heads
        entry = proof.entry or {}
        typer.echo(
            f"OK: inclusion proof: entry {proof.index} ({entry.get('kind')}) is in the log of "
            f"{head.size} entries (root {head.root.hex()}) signed by key {head.key_id}"
        )


@audit_app.command()
def verify(
    file: Annotated[
        Path, typer.Argument(help="an export (`sandbox audit export`) or a proof file")
    ],
    public_key: Annotated[Path, typer.Option("--public-key", help="the log's public key (PEM)")],
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="a tree head you kept earlier: the log must extend it"),
    ] = None,
    log: LogOpt = "default",
    witness: Annotated[
        list[str] | None,
        typer.Option(
            "--witness",
            help="NAME=PEMFILE: a witness whose cosignature counts (repeat; pinned)",
        ),
    ] = None,
    min_witnesses: Annotated[
        int | None,
        typer.Option(
            "--min-witnesses",
            min=0,
            help="how many witnesses must have cosigned (pinned; default all given)",
        ),
    ] = None,
    verifier_home: HomeOpt = None,
) -> None:
    """Verify every entry, the tree head signature, that the log extends the one you verified
    last time (key, head and witnesses remembered in $SANDBOX_VERIFIER_HOME or
    ~/.config/sandbox/verifier), the witnesses' cosignatures, and that the budget entries add
    up (each release and refund of one earlier reservation, no account past its cap). A proof
    file (`sandbox audit prove` / `inclusion`) is recognised and checked offline."""
    from policies.verify import read_proof_file

    proof = _guard(lambda: read_proof_file(file), prefix="FAILED", code=1)
    if proof is not None:
        _verify_proof_file(proof, public_key, log, verifier_home)
        return

    def run() -> Any:
        from policies.keys import load_public_key
        from policies.treehead import SignedTreeHead
        from policies.verifier_memory import VerifierMemory
        from policies.verify import VerifiedLog, verify_export

        key = load_public_key(public_key)
        witnesses = _witness_keys(witness or [])
        earlier = None
        if previous is not None:
            earlier = SignedTreeHead.from_json(json.loads(previous.read_text()))

        def check(result: VerifiedLog) -> None:
            if earlier is not None:
                verify_export(file, key, earlier)
            _replay_export(file)

        memory = VerifierMemory(verifier_home)
        verdict = memory.verify(
            file, key, log, witness_keys=witnesses, min_witnesses=min_witnesses, check=check
        )
        return verdict, earlier, memory

    verdict, earlier, memory = _guard(run, prefix="FAILED", code=1)
    result, before = verdict.log, verdict.before
    typer.echo(f"OK: {result.size} entries, root {result.root.hex()}")
    typer.echo(f"tree head signed by key {result.tree_head.key_id}")
    if before is None:
        typer.echo(
            f"first verification of log {log!r}: pinned key {result.tree_head.key_id} and this "
            f"head in {memory.path(log)}; later verifications require both"
        )
    elif before.head.size == result.size:
        typer.echo(f"the same log you verified last time ({result.size} entries)")
    else:
        typer.echo(
            f"extends the {before.head.size} entries you verified last time "
            f"({result.size - before.head.size} new)"
        )
    if earlier is not None:
        typer.echo(f"extends the earlier tree head of size {earlier.size}")
    if result.witnesses:
        typer.echo(f"cosigned by witnesses: {', '.join(result.witnesses)}")
    typer.echo("the budget entries add up")


@audit_app.command()
def forget(log: LogOpt = "default", verifier_home: HomeOpt = None) -> None:
    """Drop the key, head and witnesses your verifier pinned for a log (the next verify pins
    again: do this only after the authority's new key was confirmed to you)."""
    from policies.verifier_memory import VerifierMemory

    memory = VerifierMemory(verifier_home)
    existed = _guard(lambda: memory.forget(log))
    if existed:
        typer.echo(f"forgot log {log!r}: the next verify pins its key and head again")
    else:
        typer.echo(f"nothing remembered for log {log!r} in {memory.home}")


def _signed_head_at(log: TransparencyLog, size: int) -> Any:
    """A head of ``size`` entries signed now, over the root recomputed from the entries."""
    import time

    from policies.merkle import root_of
    from policies.treehead import sign_tree_head

    if not 0 <= size <= log.size:
        raise ValueError(f"the log has {log.size} entries; pick a size from 0 to {log.size}")
    assert log._key is not None
    root = root_of(log.entries(0, size))
    if root != log.root(size):
        raise VerificationError(
            f"the first {size} entries no longer hash to the stored tree: the state was edited"
        )
    return sign_tree_head(log._key, size, root, int(time.time() * 1000))


@audit_app.command()
def prove(
    first: Annotated[int, typer.Option("--from", help="the smaller tree size")],
    second: Annotated[
        int, typer.Option("--to", help="the larger tree size (0: the whole log)")
    ] = 0,
    state: StateOpt = Path("var"),
    keys: KeysOpt = None,
    hub: Annotated[bool, typer.Option("--hub", help="ask the hub (the profile's)")] = False,
    profile: ProfileOpt = None,
) -> None:
    """Print an RFC 9162 consistency proof that the log of --from entries is a prefix of the
    log of --to entries, with both signed heads, as JSON (check it with `audit verify`)."""
    from policies.verify import consistency_proof_json

    if first < 0 or second < 0:
        _fail("--from and --to must be 0 or more")
    if hub:
        body = hub_consistency(first, second, profile)
    else:

        def run() -> dict[str, object]:
            log = _open_log(state, keys, signing=True)
            end = second or log.size
            if first > end:
                raise ValueError(f"--from {first} is after --to {end}: a log only grows")
            heads = _signed_head_at(log, first), _signed_head_at(log, end)
            return consistency_proof_json(*heads, log.consistency_proof(first, end))

        body = _guard(run)
    typer.echo(json.dumps(body, sort_keys=True, indent=1))


@audit_app.command()
def inclusion(
    index: Annotated[int, typer.Argument(help="the entry's index")],
    size: Annotated[int, typer.Option(help="the tree size (0: the whole log)")] = 0,
    state: StateOpt = Path("var"),
    keys: KeysOpt = None,
    hub: Annotated[bool, typer.Option("--hub", help="ask the hub (the profile's)")] = False,
    profile: ProfileOpt = None,
) -> None:
    """Print an RFC 9162 inclusion proof of entry INDEX (its exact bytes) under a signed
    head, as JSON (check it with `audit verify`)."""
    from policies.verify import inclusion_proof_json

    if index < 0 or size < 0:
        _fail("INDEX and --size must be 0 or more")
    if hub:
        body = hub_inclusion(index, size, profile)
    else:

        def run() -> dict[str, object]:
            log = _open_log(state, keys, signing=True)
            end = size or log.size
            if index >= end:
                raise ValueError(f"the log of {end} entries has no entry {index}")
            head = _signed_head_at(log, end)
            return inclusion_proof_json(
                index, log.entry(index), head, log.inclusion_proof(index, end)
            )

        body = _guard(run)
    typer.echo(json.dumps(body, sort_keys=True, indent=1))


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
    export_file: Annotated[
        Path | None,
        typer.Option("--export", help="read an export offline (verified first) instead of --state"),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="with --export: the log's public key")
    ] = None,
    log: LogOpt = "default",
    verifier_home: HomeOpt = None,
    firm: Annotated[str | None, typer.Option(help="only entries about this firm")] = None,
    dataset: Annotated[str | None, typer.Option(help="only entries about this dataset")] = None,
    decision: Annotated[str | None, typer.Option(help="permit or deny")] = None,
    kind: Annotated[str | None, typer.Option(help="request, decision, release, ...")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    limit: Annotated[int, typer.Option(help="at most this many entries")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON entry per line")] = False,
) -> None:
    """List log entries matching every filter given, oldest first, with the epsilon, purpose
    and grant each is about (from the state, or offline from a verified --export)."""
    from policies.entries import ENTRY_KINDS

    if decision is not None and decision not in ("permit", "deny"):
        _fail(f"--decision must be permit or deny, not {decision!r}")
    if kind is not None and kind not in ENTRY_KINDS:
        _fail(f"--kind {kind!r} is not an entry kind; use one of: {', '.join(sorted(ENTRY_KINDS))}")
    if limit < 0:
        _fail("--limit must be 0 or more")
    since_ms, until_ms = _time_ms(since, "--since"), _time_ms(until, "--until")
    filters: dict[str, Any] = dict(
        kind=kind,
        firm=firm,
        dataset=dataset,
        decision=decision,
        since_ms=since_ms,
        until_ms=until_ms,
        limit=limit,
    )
    if export_file is not None:
        if public_key is None:
            _fail("--export needs --public-key (the log's public key) to verify it first")
        entries, context = _exported_entries(export_file, public_key, log, verifier_home, filters)
    else:
        entries = _guard(lambda: _open_log(state, None, signing=False).search(**filters))
        context = _guard(lambda: _state_context(state, entries))
    if not as_json:
        typer.echo(_HEADER)
    for entry in entries:
        typer.echo(
            json.dumps(entry, ensure_ascii=False, sort_keys=True)
            if as_json
            else _row(entry, context)
        )
    if not as_json:
        typer.echo(f"({len(entries)} entries)")


class _Context:
    """Linked entries: requests by digest, reservations by id (to name purpose and epsilon)."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.reservations: dict[str, dict[str, Any]] = {}

    def add(self, entry: dict[str, Any]) -> None:
        if entry.get("kind") == "request" and isinstance(entry.get("request_digest"), str):
            self.requests[entry["request_digest"]] = entry
        elif entry.get("kind") == "reservation" and isinstance(entry.get("reservation_id"), str):
            self.reservations[entry["reservation_id"]] = entry

    def request_of(self, entry: dict[str, Any]) -> dict[str, Any]:
        digest = entry.get("request_digest")
        if digest is None and isinstance(entry.get("reservation_id"), str):
            digest = self.reservations.get(entry["reservation_id"], {}).get("request_digest")
        found = self.requests.get(digest) if isinstance(digest, str) else None
        request = (found or {}).get("request")
        return request if isinstance(request, dict) else {}


def _matches(entry: dict[str, Any], f: dict[str, Any]) -> bool:
    for key in ("kind", "firm", "dataset", "decision"):
        if f[key] is not None and entry.get(key) != f[key]:
            return False
    ts = entry.get("ts_ms", 0)
    if f["since_ms"] is not None and ts < f["since_ms"]:
        return False
    return not (f["until_ms"] is not None and ts >= f["until_ms"])


def _exported_entries(
    file: Path, public_key: Path, log: str, home: Path | None, filters: dict[str, Any]
) -> tuple[list[dict[str, Any]], _Context]:
    def run() -> tuple[list[dict[str, Any]], _Context]:
        from policies.keys import load_public_key
        from policies.verifier_memory import VerifierMemory

        VerifierMemory(home).verify(
            file, load_public_key(public_key), log, check=lambda _: _replay_export(file)
        )
        context, found = _Context(), list[dict[str, Any]]()
        with open(file, "rb") as f:
            size = json.loads(f.readline())["size"]
            for _ in range(size):
                entry = json.loads(f.readline())
                context.add(entry)
                if len(found) < filters["limit"] and _matches(entry, filters):
                    found.append(entry)
        return found, context

    return _guard(run, prefix="FAILED", code=1)


def _state_context(state: Path, entries: list[dict[str, Any]]) -> _Context:
    """The request and reservation entries the listed entries refer to, read from the state."""
    context = _Context()
    for entry in entries:
        context.add(entry)
    conn = _database(state).conn()

    def linked(kind: str, field: str, raw: set[Any]) -> None:
        values = sorted(v for v in raw if isinstance(v, str))
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                "SELECT data FROM entries WHERE kind = ? AND "
                f"json_extract(CAST(data AS TEXT), '$.{field}') IN ({marks})",
                (kind, *chunk),
            )
            for (data,) in rows:
                context.add(json.loads(data))

    linked("reservation", "reservation_id", {e.get("reservation_id") for e in entries} - {None})
    digests = {e.get("request_digest") for e in entries}
    digests |= {r.get("request_digest") for r in context.reservations.values()}
    linked("request", "request_digest", digests - {None})
    return context


_HEADER = (
    f"{'index':>8}  {'time (UTC)':<19}  {'kind':<11}  {'firm':<12}  {'dataset':<12}  "
    f"{'decision':<8}  {'epsilon':>8}  {'purpose':<24}  {'grant':<16}  details"
)


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _row(entry: dict[str, Any], context: _Context) -> str:
    when = datetime.fromtimestamp(entry["ts_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    request = context.request_of(entry)
    epsilon = entry.get("epsilon", request.get("epsilon"))
    grant = entry.get("grant_id") or request.get("grant_id")
    purpose = request.get("purpose")
    if entry.get("kind") == "grant" and isinstance(entry.get("grant"), dict):
        purpose = entry["grant"].get("purpose")
    details = []
    for key in ("release_sha256", "plan_digest", "status"):
        if entry.get(key) is not None:
            details.append(f"{key}={entry[key]}")
    if entry.get("reasons"):
        details.append("reasons=" + ",".join(r["code"] for r in entry["reasons"]))
    return "  ".join(
        [
            f"{entry['index']:>8}",
            when,
            f"{entry['kind']:<11}",
            f"{_cell(entry.get('firm'), 12):<12}",
            f"{_cell(entry.get('dataset'), 12):<12}",
            f"{_cell(entry.get('decision'), 8):<8}",
            f"{_cell(None if epsilon is None else f'{epsilon:g}', 8):>8}",
            f"{_cell(purpose, 24):<24}",
            f"{_cell(grant, 16):<16}",
            " ".join(details),
        ]
    ).rstrip()


mount_hub_commands(audit_app)
