"""The ``sandbox`` command line.

sandbox datasets --catalog DIR                 list datasets and their public metadata
sandbox query --catalog DIR --epsilon E SQL    run a DP query on this node (preview)
sandbox mock --catalog DIR DATASET             write mock rows from public metadata
sandbox generate --out DIR                     write synthetic department data + manifests
sandbox demo                                   the embedded end-to-end demo
sandbox audit ...                              regulators: export, verify, show the log
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from sandbox.errors import SandboxError

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Government data sandbox.",
)

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="catalog directory of manifests")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
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
        for col in m.columns:
            meta = ""
            if col.role == "identifier":
                meta = "identifier, never queryable"
            elif col.categories is not None:
                shown = ", ".join(map(str, col.categories[:8]))
                meta = f"categories: {shown}{' …' if len(col.categories) > 8 else ''}"
            elif col.bounds is not None:
                meta = f"bounds: [{col.bounds[0]}, {col.bounds[1]}]"
            typer.echo(f"    {col.name:<28} {col.type:<6} {meta}")


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
    from sandbox.engine import QueryEngine

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


def main() -> None:  # pragma: no cover
    sys.exit(app())
