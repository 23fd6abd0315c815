"""A firm's hub commands, and what every hub-backed command shares (the ``--profile`` option,
the client, tables and ``--json``).

sandbox datasets | describe DATASET | mock DATASET          the hub's catalog (public metadata)
sandbox request --datasets ... | --file terms.yaml          ask for access
sandbox requests | withdraw ID                              this firm's access requests
sandbox query SQL --epsilon E [--delta D] [--grant G]       a DP query under a grant
sandbox train JOB.yaml [--follow] | jobs | result ID        DP training jobs and results
sandbox budget [--grant G] [--dataset D]                    what may still be spent

``datasets``, ``query`` and ``mock`` with ``--catalog DIR`` stay local (sandbox/cli.py). The
profile is ``--profile FILE``, else ``$SANDBOX_PROFILE``, the default file or ``SANDBOX_*``
variables: never a secret on the command line. Imports only typer and the SDK (no query
engine, OpenDP, Polars, torch or Flower), so a query starts fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import typer

from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.client import Profile
    from sandbox.client.jobs import JobEvent

_T = TypeVar("_T")

ProfileOpt = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        help="client profile file (default $SANDBOX_PROFILE, ~/.config/sandbox/profile.toml, "
        "SANDBOX_* variables)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def fail(message: object) -> NoReturn:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code=2)


def profile_of(path: Path | None) -> Profile:
    from sandbox.client import Profile

    return Profile.load(path)


def call(action: Callable[[], _T]) -> _T:
    """Run ``action``; a ClientError (or any of our errors) becomes one ``error:`` line."""
    try:
        return action()
    except SandboxError as exc:
        fail(exc)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items() if not isinstance(v, bytes)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if not isinstance(v, bytes)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(_plain(value), ensure_ascii=False, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A rich table for people."""
    from rich.console import Console
    from rich.table import Table

    t = Table(*headers, title=title)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    Console(width=160).print(t)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# ---------------------------------------------------------------------------------------------
# the commands that share a name with the local ones: called from sandbox/cli.py without --catalog


def hub_datasets(profile: Path | None, as_json: bool) -> None:
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        found = call(firm.datasets)
    if as_json:
        echo_json(found)
        return
    rows = [[d.name, d.title, d.department, d.node, len(d.columns)] for d in found]
    table(["dataset", "title", "department", "node", "columns"], rows)


def hub_mock(profile: Path | None, dataset: str, rows: int, as_json: bool) -> None:
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        data = call(lambda: firm.mock(dataset, rows))
    if as_json:
        echo_json(data)
        return
    names = list(data.columns)
    count = max((len(v) for v in data.columns.values()), default=0)
    body = [
        [data.columns[n][i] if i < len(data.columns[n]) else "" for n in names]
        for i in range(count)
    ]
    table(names, body, title=f"{data.dataset} (synthetic)")
    typer.echo(data.note)


def hub_query(
    profile: Path | None,
    sql: str,
    epsilon: float,
    delta: float,
    purpose: str,
    grant: str | None,
    min_group_size: int | None,
    as_json: bool,
) -> None:
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        answer = call(
            lambda: firm.query(
                sql, epsilon, delta, purpose=purpose, grant_id=grant, min_group_size=min_group_size
            )
        )
    if as_json:
        echo_json(
            {
                "result_id": answer.result_id,
                "grant_id": answer.grant_id,
                "dataset": answer.dataset,
                "outputs": list(answer.outputs),
                "rows": [
                    {k: {"value": c.value, "ci95": c.ci95} for k, c in cells.items()}
                    for cells in answer.rows
                ],
                "epsilon_spent": answer.epsilon_spent,
                "delta_spent": answer.delta_spent,
                "suppressed_groups": answer.suppressed_groups,
                "release_digest": answer.release_digest,
                "log_index": answer.log_index,
            }
        )
        return
    body = [
        [
            f"{c.value} [{_fmt(c.ci95[0])}, {_fmt(c.ci95[1])}]" if c.ci95 else c.value
            for c in cells.values()
        ]
        for cells in answer.rows
    ]
    table(list(answer.outputs), body, title=f"{answer.dataset} (DP, 95% intervals)")
    typer.echo(
        f"spent epsilon {_fmt(answer.epsilon_spent)}, delta {_fmt(answer.delta_spent)} under "
        f"grant {answer.grant_id}; result {answer.result_id}, log entry {answer.log_index}"
    )


# ---------------------------------------------------------------------------------------------
# firm-only commands


def _request_rows(found: Sequence[Any]) -> list[list[Any]]:
    rows = []
    for r in found:
        waiting = ", ".join(r.waiting_for()) or "-"
        reasons = "; ".join(f"{v.department}: {v.reason}" for v in r.reviews if v.reason) or "-"
        grant = r.grant.grant_id if r.grant else "-"
        rows.append(
            [r.request_id, r.state, ", ".join(r.terms["datasets"]), waiting, reasons, grant]
        )
    return rows


REQUEST_HEADERS = ["request", "state", "datasets", "waiting for", "reasons", "grant"]


def request(
    datasets: Annotated[list[str] | None, typer.Option("--datasets", help="dataset names")] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option("--columns", help="COLUMN=RULE (never/filter_only/group_by/aggregate_only)"),
    ] = None,
    purpose: Annotated[str, typer.Option(help="what the data is for")] = "",
    legal_basis: Annotated[str, typer.Option("--legal-basis", help="the legal basis")] = "",
    epsilon: Annotated[float, typer.Option(help="total epsilon per dataset")] = 0.0,
    delta: Annotated[float, typer.Option(help="total delta per dataset")] = 0.0,
    until: Annotated[str | None, typer.Option(help="last day of access, e.g. 2026-12-31")] = None,
    epsilon_per_use: Annotated[
        float, typer.Option("--epsilon-per-use", help="most epsilon one use may spend")
    ] = 0.0,
    min_group_size: Annotated[
        int, typer.Option("--min-group-size", help="smallest group released")
    ] = 0,
    train: Annotated[bool, typer.Option(help="also ask to train models")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="terms as YAML instead")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the departments for access to datasets (each owning department must approve)."""
    from sandbox.client import FirmClient

    if file is not None:
        terms: Any = file
    else:
        if not datasets:
            fail("name the datasets (--datasets NAME) or give --file terms.yaml")
        rules = {}
        for item in columns or []:
            name, sep, rule = item.partition("=")
            if not sep:
                fail(f"--columns {item!r} must be COLUMN=RULE, e.g. sex=group_by")
            rules[name] = rule
        terms = {
            "datasets": {
                d: {"epsilon": epsilon, "delta": delta, "columns": rules} for d in datasets
            },
            "purpose": purpose,
            "legal_basis": legal_basis,
            "actions": ["query", "train"] if train else ["query"],
            "valid_until": until,
            "epsilon_per_use": epsilon_per_use or epsilon,
            "min_group_size": min_group_size,
        }
    with call(lambda: FirmClient(profile_of(profile))) as firm:
        made = call(lambda: firm.request_access(terms))
    if as_json:
        echo_json(made)
        return
    table(REQUEST_HEADERS, _request_rows([made]))


def requests(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """This firm's access requests and each department's answer."""
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        found = call(firm.requests)
    if as_json:
        echo_json(found)
        return
    table(REQUEST_HEADERS, _request_rows(found))


def withdraw(
    request_id: Annotated[str, typer.Argument(help="the request to withdraw")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a pending access request."""
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        done = call(lambda: firm.withdraw(request_id))
    if as_json:
        echo_json(done)
        return
    typer.echo(f"request {done.request_id}: {done.state}")


def train(
    job: Annotated[Path, typer.Argument(help="the job, YAML or JSON")],
    purpose: Annotated[str, typer.Option(help="the grant's purpose")] = "",
    grant: Annotated[str | None, typer.Option(help="the grant to train under")] = None,
    follow: Annotated[bool, typer.Option(help="print the job's events until it ends")] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a DP training job (its budget is reserved before training starts)."""
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        made = call(lambda: firm.submit_job(job, purpose=purpose, grant_id=grant))
        if as_json:
            echo_json(made)
        else:
            reserved = ", ".join(f"{d}: epsilon {_fmt(e)}" for d, (e, _) in made.reserved.items())
            typer.echo(f"job {made.job_id} under grant {made.grant_id}; reserved {reserved}")
        if follow:
            budget = max((e for e, _ in made.reserved.values()), default=None)
            progress = RoundProgress(sys.stdout, budget)

            def stream() -> None:
                try:
                    for event in firm.follow(made.job_id):
                        echo_json(event) if as_json else progress.event(event)
                finally:
                    progress.close()

            call(stream)


def _number(value: Any) -> float:
    """A double from a JobEvent's data (JSON writes infinity as a string)."""
    return float(value)


def round_line(data: Mapping[str, Any], budget: float | None) -> str:
    """One round of a job as one line: ``round 3/10  loss 0.412  ε 1.23 of 3.00  nodes 4/4
    (12.3 s)``. ``data`` is a ``round`` JobEvent's data (RoundMetrics); ``budget`` the job's
    epsilon (the most reserved on a dataset), ``None`` leaves out "of ..."; a round with no
    released loss prints "loss –"."""
    rounds = int(data.get("rounds") or 0)
    where = f"round {int(data.get('round') or 0)}" + (f"/{rounds}" if rounds else "")
    loss = data.get("dp_loss")
    loss_text = "loss –" if loss is None else f"loss {_number(loss):.3f}"
    spent = _number(data.get("epsilon_spent") or 0.0)
    eps = f"ε {spent:.2f}" + ("" if budget is None else f" of {budget:.2f}")
    ok, failed = len(data.get("nodes") or []), len(data.get("failed") or [])
    wall = _number(data.get("wall_s") or 0.0)
    return f"{where}  {loss_text}  {eps}  nodes {ok}/{ok + failed}  ({wall:.1f} s)"


class RoundProgress:
    """``sandbox train --follow``'s output: one line per round; on a terminal the round line
    is rewritten in place (``\\r``) like a progress bar and ended at the finish. Failures and
    the final status get lines of their own."""

    def __init__(self, out: TextIO, budget: float | None, tty: bool | None = None) -> None:
        self.out, self.budget = out, budget
        self.tty = out.isatty() if tty is None else tty
        self._open = 0  # the width of the round line being rewritten, 0: none

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def close(self) -> None:
        """End a round line still being rewritten."""
        if self._open:
            self._write("\n")
            self._open = 0

    def event(self, event: JobEvent) -> None:
        if event.kind != "round":
            self.close()
            self._write(event.line() + "\n")
            return
        line = round_line(event.data, self.budget)
        if not self.tty:
            self._write(line + "\n")
            return
        self._write("\r" + line.ljust(self._open))
        self._open = max(self._open, len(line))


def jobs(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """This firm's training jobs."""
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        found = call(firm.jobs)
    if as_json:
        echo_json(found)
        return
    rows = [
        [j.job_id, j.status, ", ".join(j.datasets), f"{j.rounds_done}/{j.rounds}", j.result_id]
        for j in found
    ]
    table(["job", "status", "datasets", "rounds", "result"], rows)


def result(
    result_id: Annotated[str, typer.Argument(help="a query's or a job's result id")],
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="the authority's key: verify offline")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write a model's weights here")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A stored release by id, checked against the log when --public-key is given."""
    from sandbox.client import FirmClient

    key = None
    if public_key is not None:
        from policies.keys import load_public_key

        key = call(lambda: load_public_key(public_key))
    with call(lambda: FirmClient(profile_of(profile))) as firm:
        stored = call(lambda: firm.result(result_id, key))
    if stored.model is not None and out is not None:
        call(lambda: out.write_bytes(stored.model.weights) if stored.model else 0)
    if as_json:
        echo_json(
            {
                "result_id": stored.result_id,
                "grant_id": stored.grant_id,
                "kind": stored.kind,
                "answer": stored.answer.values() if stored.answer else None,
                "model": stored.model,
                "release_digest": stored.release_digest,
                "verified": key is not None,
            }
        )
        return
    typer.echo(f"{stored.kind} result {stored.result_id} under grant {stored.grant_id}")
    if stored.answer is not None:
        rows = [[c.value for c in cells.values()] for cells in stored.answer.rows]
        table(list(stored.answer.outputs), rows)
    if stored.model is not None:
        typer.echo(f"model {stored.model.status}, {len(stored.model.weights)} bytes of weights")
    typer.echo("verified against the signed log" if key else "not verified (give --public-key)")


def budget(
    grant: Annotated[str, typer.Option(help="the grant (default: the hub's choice)")] = "",
    dataset: Annotated[str, typer.Option(help="the dataset")] = "",
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What this firm may still spend under a grant on a dataset."""
    from sandbox.client import FirmClient

    with call(lambda: FirmClient(profile_of(profile))) as firm:
        left = call(lambda: firm.remaining(grant, dataset))
    if as_json:
        echo_json(left)
        return
    rows = [
        [a.account, _fmt(a.epsilon_cap), _fmt(a.epsilon_spent), _fmt(a.delta_cap), a.committed]
        for a in (left.grant, left.dataset)
    ]
    table(["account", "epsilon cap", "epsilon spent", "delta cap", "releases"], rows)
    typer.echo(f"may still spend epsilon {_fmt(left.epsilon)}, delta {_fmt(left.delta)}")


def mount(app: typer.Typer) -> None:
    """Add the firm's hub commands to ``app`` (``datasets``, ``query`` and ``mock`` are in
    sandbox/cli.py, which calls :func:`hub_datasets`, :func:`hub_query`, :func:`hub_mock`)."""
    for command in (request, requests, withdraw, train, jobs, result, budget):
        app.command()(command)
