"""``sandbox dept``: a department's hub commands (its identity is its credential).

sandbox dept register MANIFEST --node N --node-address HOST:PORT --epsilon-cap E --delta-cap D
sandbox dept requests                                   requests waiting for this department
sandbox dept approve REQUEST_ID [--dataset D] [--note T]
sandbox dept refuse REQUEST_ID --reason R [--dataset D]
sandbox dept amend REQUEST_ID --dataset D --epsilon E [--delta D] --columns C=RULE --reason R
sandbox dept revoke GRANT_ID --reason R
sandbox dept budget [DATASET]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox.firm_cli import (
    REQUEST_HEADERS,
    JsonOpt,
    ProfileOpt,
    _fmt,
    _request_rows,
    call,
    echo_json,
    fail,
    profile_of,
    table,
)

if TYPE_CHECKING:
    from sandbox.client import DepartmentClient
    from sandbox.client.department import Reviewed

dept_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Departments: register datasets, review access requests, revoke grants, budgets.",
)


def _client(profile: Path | None) -> DepartmentClient:
    from sandbox.client import DepartmentClient

    return call(lambda: DepartmentClient(profile_of(profile)))


def _reviewed(done: Reviewed, as_json: bool) -> None:
    if as_json:
        echo_json(done)
        return
    table(REQUEST_HEADERS, _request_rows([done.request]))
    typer.echo(f"logged as entry {done.log_index}")


@dept_app.command()
def register(
    manifest: Annotated[Path, typer.Argument(help="the dataset's manifest YAML")],
    node: Annotated[str, typer.Option(help="the node that holds the data")],
    node_address: Annotated[str, typer.Option("--node-address", help="the node's HOST:PORT")],
    epsilon_cap: Annotated[float, typer.Option("--epsilon-cap", help="total epsilon")],
    delta_cap: Annotated[float, typer.Option("--delta-cap", help="total delta")] = 0.0,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a dataset held on one of this department's nodes, with its total budget."""
    with _client(profile) as dept:
        done = call(
            lambda: dept.register(
                manifest,
                node=node,
                node_address=node_address,
                epsilon_cap=epsilon_cap,
                delta_cap=delta_cap,
            )
        )
    if as_json:
        echo_json(done)
        return
    typer.echo(f"registered {done.dataset.name} on {done.dataset.node}; log entry {done.log_index}")


@dept_app.command()
def requests(profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """The access requests waiting for this department."""
    with _client(profile) as dept:
        found = call(dept.pending)
    if as_json:
        echo_json(found)
        return
    rows = [
        [
            r.request_id,
            r.firm,
            ", ".join(r.terms["datasets"]),
            r.terms["purpose"],
            r.terms["legal_basis"],
        ]
        for r in found
    ]
    table(["request", "firm", "datasets", "purpose", "legal basis"], rows)


@dept_app.command()
def approve(
    request_id: Annotated[str, typer.Argument(help="the request")],
    dataset: Annotated[str, typer.Option(help="one dataset (default: all of ours)")] = "",
    note: Annotated[str, typer.Option(help="a note for the log")] = "",
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a request for this department's datasets."""
    with _client(profile) as dept:
        _reviewed(call(lambda: dept.approve(request_id, dataset, note)), as_json)


@dept_app.command()
def refuse(
    request_id: Annotated[str, typer.Argument(help="the request")],
    reason: Annotated[str, typer.Option(help="why (the firm sees it)")],
    dataset: Annotated[str, typer.Option(help="one dataset (default: all of ours)")] = "",
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refuse a request; the firm sees the reason."""
    with _client(profile) as dept:
        _reviewed(call(lambda: dept.refuse(request_id, reason, dataset)), as_json)


@dept_app.command()
def amend(
    request_id: Annotated[str, typer.Argument(help="the request")],
    dataset: Annotated[str, typer.Option(help="the dataset whose terms change")],
    epsilon: Annotated[float, typer.Option(help="the total epsilon accepted")],
    reason: Annotated[str, typer.Option(help="why (the firm sees it)")],
    delta: Annotated[float, typer.Option(help="the total delta accepted")] = 0.0,
    columns: Annotated[
        list[str] | None, typer.Option("--columns", help="COLUMN=RULE accepted")
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve with narrower terms for one dataset."""
    rules = {}
    for item in columns or []:
        name, sep, rule = item.partition("=")
        if not sep:
            fail(f"--columns {item!r} must be COLUMN=RULE, e.g. sex=group_by")
        rules[name] = rule
    terms = {"epsilon": epsilon, "delta": delta, "columns": rules}
    with _client(profile) as dept:
        _reviewed(call(lambda: dept.amend(request_id, dataset, terms, reason)), as_json)


@dept_app.command()
def revoke(
    grant_id: Annotated[str, typer.Argument(help="the grant")],
    reason: Annotated[str, typer.Option(help="why (logged)")],
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a grant on this department's datasets."""
    with _client(profile) as dept:
        done = call(lambda: dept.revoke(grant_id, reason))
    if as_json:
        echo_json(done)
        return
    typer.echo(f"revoked grant {done.grant.grant_id}; log entry {done.log_index}")


@dept_app.command()
def budget(
    dataset: Annotated[str | None, typer.Argument(help="one dataset (default: all)")] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The budget accounts of this department's datasets and of the grants on them."""
    with _client(profile) as dept:
        accounts = call(lambda: dept.budgets(dataset))
    if as_json:
        echo_json(accounts)
        return
    rows = [
        [
            a.account,
            _fmt(a.epsilon_cap),
            _fmt(a.epsilon_spent),
            _fmt(a.delta_cap),
            _fmt(a.delta_spent),
            a.committed,
        ]
        for a in accounts
    ]
    table(["account", "epsilon cap", "epsilon spent", "delta cap", "delta spent", "releases"], rows)
