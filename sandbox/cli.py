"""The ``sandbox`` command line.

sandbox datasets [--catalog DIR]               list datasets (the hub's, or a local catalog)
sandbox check --catalog DIR [DATASET ...]      check each dataset's rows against its manifest
sandbox query --epsilon E SQL [--catalog DIR]  a DP query at the hub (or local preview)
sandbox request|requests|withdraw|train|jobs|result|budget   firms (sandbox/firm_cli.py)
sandbox dept ...                               departments (sandbox/dept_cli.py)
sandbox mock --catalog DIR DATASET             write mock rows from public metadata
sandbox generate --out DIR                     write synthetic department data + manifests
sandbox demo [--state DIR] [--quick]            the demo: hub and four nodes as processes
sandbox audit ...                              regulators: export, verify, show the log

With ``--catalog``, ``--separator CHAR`` (one character, or ``tab``) is the separator of every
CSV file of the catalog, instead of the manifest's ``separator`` or the detected one.

Every failure ends the process with a non-zero exit code and ONE line on stderr
(``error: <what went wrong and what to do>``), never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from sandbox.errors import SandboxError
from sandbox.tables import render

if TYPE_CHECKING:
    from sandbox.catalog import ColumnSpec


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _App(typer.Typer):
    """The typer app, run so that every failure is one ``error:`` line and an exit code."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().__call__(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else _one_line(exc))
            sys.exit(2)
        except click.ClickException as exc:  # usage: bad option value, missing argument
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # our own types: their message says what to do
            if _documented(exc):
                typer.echo(f"error: {_one_line(exc)}", err=True)
                sys.exit(2)
            typer.echo(
                f"error: unexpected internal failure ({type(exc).__name__}); nothing was "
                "released; please report it",
                err=True,
            )
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _documented(exc: BaseException) -> bool:
    """An error type the product documents (sandbox, policies or federation)."""
    from policies.errors import PolicyError

    kinds: tuple[type[BaseException], ...] = (SandboxError, PolicyError)
    try:
        from federation.errors import FederationError

        kinds += (FederationError,)
    except ImportError:  # pragma: no cover - federation is installed with the sandbox
        pass
    return isinstance(exc, kinds)


app = _App(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Government data sandbox.",
)

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="catalog directory of manifests")]
LocalOpt = Annotated[
    Path | None,
    typer.Option("--catalog", help="a local catalog directory (default: ask the hub)"),
]
ProfileOpt = Annotated[
    Path | None, typer.Option("--profile", help="client profile file (without --catalog)")
]
SeparatorOpt = Annotated[
    str | None,
    typer.Option(
        "--separator",
        help="the CSV separator of every CSV file of the catalog (one character, or tab), "
        "instead of the manifest's or the detected one",
    ),
]


def _local_only(separator: str | None) -> None:
    if separator is not None:
        raise _fail(ValueError("--separator reads a local catalog's CSV files: give --catalog"))


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {_one_line(exc)}", err=True)
    return typer.Exit(code=2)


@app.command()
def datasets(
    catalog: LocalOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    profile: ProfileOpt = None,
    separator: SeparatorOpt = None,
) -> None:
    """List the datasets and their public metadata (the hub's, or a local --catalog)."""
    if catalog is None:
        _local_only(separator)
        return __import__("sandbox.firm_cli", fromlist=["x"]).hub_datasets(profile, as_json)  # type: ignore[no-any-return]
    from sandbox.catalog import load_catalog

    try:
        cat = load_catalog(catalog, separator)
    except SandboxError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps([m.public_metadata() for m in cat], ensure_ascii=False, indent=2))
        return
    for m in cat:
        unit = m.privacy_unit
        who = f"{unit.id_column} (<= {unit.max_rows} rows)" if unit.id_column else "one row"
        typer.echo(f"{m.name}  [{m.classification.value}]  {m.title}  — {m.department}")
        typer.echo(f"    privacy unit: {who}")
        rows = [[col.name, col.type, _column_metadata(col)] for col in m.columns]
        table = render(["column", "type", "public metadata"], rows, right=[False] * 3)
        typer.echo("\n".join("    " + line for line in table.splitlines()))


def _column_metadata(col: ColumnSpec) -> str:
    if col.role == "identifier":
        return "identifier, never queryable"
    if col.categories is not None:
        shown = ", ".join(map(str, col.categories[:8]))
        return f"categories: {shown}{' …' if len(col.categories) > 8 else ''}"
    if col.bounds is not None:
        return f"bounds: [{col.bounds[0]}, {col.bounds[1]}]"
    return ""


@app.command()
def check(
    catalog: CatalogOpt,
    names: Annotated[
        list[str] | None, typer.Argument(help="datasets to check (default: all)")
    ] = None,
    separator: SeparatorOpt = None,
) -> None:
    """Check each dataset's rows against its manifest (bounds, categories, row_bound).

    Prints one line per problem, naming the column and the number of rows, never a value.
    Exits 2 if a dataset would be refused when the node loads it.
    """
    from sandbox.catalog import check_dataset, load_catalog

    try:
        cat = load_catalog(catalog, separator)
        manifests = [cat[n] for n in names] if names else list(cat)
        reports = [check_dataset(m) for m in manifests]
    except SandboxError as exc:
        raise _fail(exc) from None
    failed = False
    for report in reports:
        lines = report.lines()
        failed = failed or not report.ok
        if not lines:
            typer.echo(f"ok: {report.dataset}")
        for line in lines:
            typer.echo(line)
    if failed:
        typer.echo(
            "error: some datasets do not match their manifests (see above); fix the data or "
            "the manifest, or set out_of_bounds: clamp",
            err=True,
        )
        raise typer.Exit(code=2)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="the SQL query")],
    epsilon: Annotated[float, typer.Option(help="privacy loss for this query")],
    catalog: LocalOpt = None,
    delta: Annotated[float, typer.Option(help="delta, needed for non-public group keys")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    purpose: Annotated[str, typer.Option(help="the grant's purpose (hub)")] = "",
    grant: Annotated[str | None, typer.Option(help="the grant to use (hub)")] = None,
    min_group_size: Annotated[
        int | None, typer.Option("--min-group-size", help="raise the grant's minimum (hub)")
    ] = None,
    profile: ProfileOpt = None,
    separator: SeparatorOpt = None,
) -> None:
    """Run a DP query under a grant at the hub, or with --catalog on local data (a department
    previewing its own node)."""
    if catalog is None:
        _local_only(separator)
        firm_cli = __import__("sandbox.firm_cli", fromlist=["x"])
        args = (sql, epsilon, delta, purpose, grant, min_group_size, as_json)
        return firm_cli.hub_query(profile, *args)  # type: ignore[no-any-return]
    from sandbox.catalog import load_catalog
    from sandbox.query import QueryEngine

    try:
        result = QueryEngine(load_catalog(catalog, separator)).run(
            sql, epsilon=epsilon, delta=delta
        )
    except SandboxError as exc:
        if as_json:
            typer.echo(json.dumps({"error": str(exc), "epsilon_spent": 0.0, "delta_spent": 0.0}))
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        typer.echo(result.table())


@app.command()
def mock(
    dataset: Annotated[str, typer.Argument(help="dataset name")],
    catalog: LocalOpt = None,
    out: Annotated[Path | None, typer.Option(help="output .csv or .parquet")] = None,
    rows: Annotated[int, typer.Option(help="number of mock rows")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed (local only)")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (hub)")] = False,
    profile: ProfileOpt = None,
    separator: SeparatorOpt = None,
) -> None:
    """Mock rows from the dataset's public metadata only: written to a file from a local
    --catalog, or shown from the hub (20 rows unless --rows)."""
    if catalog is None:
        _local_only(separator)
        count = rows if rows != 1000 else 20
        firm_cli = __import__("sandbox.firm_cli", fromlist=["x"])
        return firm_cli.hub_mock(profile, dataset, count, as_json)  # type: ignore[no-any-return]
    from sandbox.catalog import load_catalog
    from sandbox.mock import write_mock

    try:
        manifest = load_catalog(catalog, separator)[dataset]
        path = write_mock(manifest, out or Path(f"{dataset}_mock.csv"), rows, seed)
    except SandboxError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {rows} mock rows of {dataset} to {path}")


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="output directory (becomes a catalog)")],
    rows: Annotated[int, typer.Option(help="persons across all cities")] = 200_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write synthetic department data for four Shandong cities, with manifests."""
    from sandbox.generate import generate as run_generate

    try:
        report = run_generate(out, rows=rows, seed=seed, progress=lambda m: typer.echo(m, err=True))
    except (SandboxError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    typer.echo(
        f"wrote {report.total_rows:,} rows in {len(report.datasets)} datasets to {out} "
        f"in {report.seconds:.1f} s"
    )


@app.command()
def demo(
    state: Annotated[
        Path | None,
        typer.Option("--state", help="an empty folder for the demo's state (default: a new one)"),
    ] = None,
    quick: Annotated[bool, typer.Option(help="smaller data and training")] = False,
) -> None:
    """The demo: a hub and four department nodes as processes; a bank, departments, a regulator."""
    from sandbox.demo import run_demo

    try:
        run_demo(state, quick=quick, echo=typer.echo)
    except SandboxError as exc:
        raise _fail(exc) from None


def _mount_audit() -> None:
    try:
        from sandbox.audit_cli import audit_app
    except ImportError:  # pragma: no cover - the audit commands ship with the policies package
        return
    app.add_typer(audit_app, name="audit", help="Regulators: export, verify and show the log.")


_mount_audit()
__import__("sandbox.credentials.cli", fromlist=["mount"]).mount(app)  # certs, keys
app.add_typer(__import__("sandbox.node.cli", fromlist=["node_app"]).node_app, name="node")
app.add_typer(__import__("sandbox.hub.cli", fromlist=["hub_app"]).hub_app, name="hub")
__import__("sandbox.firm_cli", fromlist=["mount"]).mount(app)  # request, train, budget, ...
app.add_typer(__import__("sandbox.dept_cli", fromlist=["dept_app"]).dept_app, name="dept")


def main() -> None:  # pragma: no cover
    sys.exit(app())
