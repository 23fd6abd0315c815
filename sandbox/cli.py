"""The ``sandbox`` command line.

sandbox datasets --catalog DIR                 list datasets and their public metadata
sandbox check --catalog DIR [DATASET ...]      check each dataset's rows against its manifest
sandbox query --catalog DIR --epsilon E SQL    run a DP query on this node (preview)
sandbox mock --catalog DIR DATASET             write mock rows from public metadata
sandbox generate --out DIR                     write synthetic department data + manifests
sandbox demo                                   the embedded end-to-end demo
sandbox audit ...                              regulators: export, verify, show the log

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


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {_one_line(exc)}", err=True)
    return typer.Exit(code=2)


@app.command()
def datasets(
    catalog: CatalogOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the catalog's datasets and their public metadata."""
    from sandbox.catalog import load_catalog

    try:
        cat = load_catalog(catalog)
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
) -> None:
    """Check each dataset's rows against its manifest (bounds, categories, row_bound).

    Prints one line per problem, naming the column and the number of rows, never a value.
    Exits 2 if a dataset would be refused when the node loads it.
    """
    from sandbox.catalog import check_dataset, load_catalog

    try:
        cat = load_catalog(catalog)
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
    catalog: CatalogOpt,
    epsilon: Annotated[float, typer.Option(help="privacy loss for this query")],
    delta: Annotated[float, typer.Option(help="delta, needed for non-public group keys")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Run a DP query against this node's data (a department previewing its own node)."""
    from sandbox.catalog import load_catalog
    from sandbox.query import QueryEngine

    try:
        result = QueryEngine(load_catalog(catalog)).run(sql, epsilon=epsilon, delta=delta)
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
    catalog: CatalogOpt,
    out: Annotated[Path | None, typer.Option(help="output .csv or .parquet")] = None,
    rows: Annotated[int, typer.Option(help="number of mock rows")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write mock rows generated from the dataset's public metadata only."""
    from sandbox.catalog import load_catalog
    from sandbox.mock import write_mock

    try:
        manifest = load_catalog(catalog)[dataset]
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
    workdir: Annotated[Path, typer.Option(help="where the demo writes its data and state")] = Path(
        "var/demo"
    ),
    quick: Annotated[bool, typer.Option(help="smaller data and training")] = False,
) -> None:
    """The embedded demo: departments, a firm, a regulator, end to end on this machine."""
    from sandbox.demo import run_demo

    try:
        run_demo(workdir, quick=quick, echo=typer.echo)
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


def main() -> None:  # pragma: no cover
    sys.exit(app())
