"""Checking a dataset's rows against its manifest, and refusing or clamping as it says.

Only the node that holds the data calls these. The rows are read typed as declared; values
outside the declared bounds or categories are refused (``out_of_bounds: refuse``, the
default) or clamped (``clamp``); the privacy unit's contribution bound is enforced.

>>> from sandbox.catalog.load import load_manifest
>>> report = check_dataset(load_manifest("examples/pums/pums.yaml"))
>>> report.ok, report.lines()
(True, [])
"""

from __future__ import annotations

import datetime as dt
from itertools import islice
from pathlib import Path

import polars as pl

from sandbox.catalog.manifest import Manifest, polars_type
from sandbox.catalog.report import DataProblem, DatasetReport, Severity
from sandbox.errors import ManifestError

#: The dates Python can represent; data outside them is unreadable and treated as missing.
_DATE_RANGE = (dt.date(1, 1, 1), dt.date(9999, 12, 31))


def check_dataset(manifest: Manifest, frame: pl.DataFrame | None = None) -> DatasetReport:
    """Compare a dataset's rows with its manifest, without changing or refusing anything.

    Reads the data file unless ``frame`` is given. Raises :class:`ManifestError` only if the
    data cannot be read at all (missing file or columns).

    >>> from sandbox.catalog.load import load_manifest
    >>> report = check_dataset(load_manifest("examples/pums/pums.yaml"))
    >>> report.ok, report.lines()
    (True, [])
    """
    if frame is None:
        typed, unreadable = _read_typed(manifest)
    else:
        typed, unreadable = _typed(manifest, frame)
    return _inspect(manifest, typed, unreadable)


def load_checked(manifest: Manifest) -> tuple[pl.DataFrame, DatasetReport]:
    """:func:`load_frame` with the dataset's report (its warnings say what was clamped)."""
    typed, unreadable = _read_typed(manifest)
    frame, report = _conform(manifest, typed, unreadable)
    unit = manifest.privacy_unit
    if unit.id_column is not None:
        frame = frame.filter(pl.int_range(pl.len()).over(unit.id_column) < unit.max_rows)
    identifiers = [c.name for c in manifest.columns if c.role == "identifier"]
    return frame.drop(identifiers), report


def load_frame(manifest: Manifest) -> pl.DataFrame:
    """Read a dataset's rows on its own node, typed as declared and with the privacy unit enforced.

    The rows are checked against the manifest first (:func:`check_dataset`): with
    ``out_of_bounds: refuse`` (the default) values outside the declared bounds or categories
    make loading fail with a :class:`ManifestError` that names the column and the number of
    such rows; with ``out_of_bounds: clamp`` numbers and dates are clamped to the bounds and
    unknown categories become missing. Rows beyond ``privacy_unit.max_rows`` per identifier are
    dropped (keeping the first in file order), so the declared contribution bound holds.
    Identifier columns are dropped after that: they can never be queried. NaN and values that
    cannot be read as the declared type become null. Only the node calls this.
    """
    return load_checked(manifest)[0]


def conform_frame(manifest: Manifest, frame: pl.DataFrame) -> tuple[pl.DataFrame, DatasetReport]:
    """Apply the manifest to rows already in memory (typed, identifiers possibly dropped):
    the same checks and the same clamp/refuse rule as :func:`load_frame`."""
    typed, unreadable = _typed(manifest, frame)
    return _conform(manifest, typed, unreadable)


def _read_typed(manifest: Manifest) -> tuple[pl.DataFrame, dict[str, int]]:
    path = manifest.data_path
    if not path.exists():
        raise ManifestError(f"{manifest.path}: file: data file {path} does not exist")
    try:
        if path.suffix == ".csv":
            separator = manifest.separator or detect_separator(path)
            # all strings; cast below
            frame = pl.read_csv(path, infer_schema_length=0, separator=separator)
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            raise ManifestError(f"{manifest.path}: file: {path.name} is neither .csv nor .parquet")
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = type(exc).__name__
        raise ManifestError(f"{manifest.path}: file: cannot read {path.name} ({reason})") from None
    return _typed(manifest, _renamed(manifest, frame))


#: Delimiters :func:`detect_separator` considers, in order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")


def detect_separator(path: Path, sample_lines: int = 20) -> str:
    """The CSV delimiter of ``path``: among :data:`SEPARATORS`, the one that occurs the same
    (non-zero) number of times on each of the first lines and most often in the header
    (quoted fields are not counted). A file whose lines agree on none is read with ``,``; a
    manifest names another with ``separator:``.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        lines = [line.rstrip("\r\n") for line in islice(handle, sample_lines)]
    lines = [line for line in lines if line]
    if not lines:
        return ","
    best, best_count = ",", 0
    for sep in SEPARATORS:
        counts = {_count_unquoted(line, sep) for line in lines}
        if len(counts) == 1 and (count := counts.pop()) > best_count:
            best, best_count = sep, count
    return best


def _count_unquoted(line: str, sep: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            count += 1
    return count


def _renamed(manifest: Manifest, frame: pl.DataFrame) -> pl.DataFrame:
    """Read each column with a ``source`` header under its manifest name."""
    mapping = {
        c.source: c.name
        for c in manifest.columns
        if c.source is not None and c.source != c.name and c.source in frame.columns
    }
    return frame.rename(mapping) if mapping else frame


def _typed(manifest: Manifest, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Cast every declared column present to its type; count values that could not be read."""
    wanted = [c for c in manifest.columns if c.name in frame.columns]
    missing = [
        c.name for c in manifest.columns if c.name not in frame.columns and c.role != "identifier"
    ]
    if missing:
        where = manifest.data_path.name if manifest.path is not None else "the data"
        raise ManifestError(f"{manifest.path}: columns: not in {where}: {missing}")
    casts, lost = [], []
    try:
        for col in wanted:
            raw = pl.col(col.name)
            expr = raw
            if col.type == "int" and frame.schema[col.name] == pl.String:
                expr = expr.cast(pl.Float64, strict=False)  # accepts "1e+05"
            if col.type == "date" and frame.schema[col.name] == pl.String:
                expr = expr.str.to_date(strict=False)
            expr = expr.cast(polars_type(col.type), strict=False)
            if col.type == "float":
                expr = expr.fill_nan(None)
            casts.append(expr.alias(col.name))
            lost.append((raw.is_not_null() & expr.is_null()).sum().alias(col.name))
        counts = frame.select(lost).row(0, named=True) if lost else {}
        typed = frame.select(casts)
    except pl.exceptions.PolarsError as exc:
        raise ManifestError(
            f"{manifest.path}: the data cannot be read as the declared column types "
            f"({type(exc).__name__}); check each column's type"
        ) from None
    return typed, {name: int(n) for name, n in counts.items() if n}


def _inspect(manifest: Manifest, frame: pl.DataFrame, unreadable: dict[str, int]) -> DatasetReport:
    policy = manifest.out_of_bounds
    report = DatasetReport(manifest.name, policy)
    bad: Severity = "error" if policy == "refuse" else "warning"
    stats: list[pl.Expr] = []
    for col in manifest.columns:
        if col.name not in frame.columns or col.role == "identifier":
            continue
        c = pl.col(col.name)
        if col.type == "date":
            low, high = _DATE_RANGE
            stats.append(((c < low) | (c > high)).sum().alias(f"range:{col.name}"))
        if col.bounds is not None:
            low, high = col.bounds
            stats.append(((c < low) | (c > high)).sum().alias(f"bounds:{col.name}"))
        if col.categories is not None:
            known = pl.Series(list(col.categories), dtype=polars_type(col.type))
            stats.append(
                (c.is_not_null() & ~c.is_in(known.implode())).sum().alias(f"unknown:{col.name}")
            )
    values = frame.select(stats).row(0, named=True) if stats else {}
    for col in manifest.columns:
        if col.name not in frame.columns or col.role == "identifier":
            continue
        lost = unreadable.get(col.name, 0) + int(values.get(f"range:{col.name}") or 0)
        if lost:
            report.problems.append(
                DataProblem(
                    col.name,
                    "unreadable",
                    lost,
                    "warning",
                    f"column {col.name!r}: {lost} values cannot be read as {col.type} and are "
                    "treated as missing",
                )
            )
        outside = int(values.get(f"bounds:{col.name}") or 0)
        if outside:
            done = "refused" if policy == "refuse" else "clamped to the bounds"
            report.problems.append(
                DataProblem(
                    col.name,
                    "out_of_bounds",
                    outside,
                    bad,
                    f"column {col.name!r}: {outside} rows outside the declared bounds ({done})",
                )
            )
        unknown = int(values.get(f"unknown:{col.name}") or 0)
        if unknown:
            done = "refused" if policy == "refuse" else "treated as missing"
            report.problems.append(
                DataProblem(
                    col.name,
                    "unknown_category",
                    unknown,
                    bad,
                    f"column {col.name!r}: {unknown} rows hold a category the manifest does not "
                    f"declare ({done})",
                )
            )
        if col.categories is not None:
            present = frame.get_column(col.name).drop_nulls().unique()
            known = pl.Series(list(col.categories), dtype=polars_type(col.type))
            absent = int((~known.is_in(present.implode())).sum())
            if absent:
                report.problems.append(
                    DataProblem(
                        col.name,
                        "absent_category",
                        absent,
                        "warning",
                        f"column {col.name!r}: {absent} of {len(col.categories)} declared "
                        "categories do not occur in the data (their counts will be noise "
                        "around zero)",
                    )
                )
    if frame.height > manifest.row_bound:
        report.problems.append(
            DataProblem(
                None,
                "too_many_rows",
                frame.height - manifest.row_bound,
                "error",
                f"the data holds more rows than the manifest's row_bound {manifest.row_bound}; "
                "raise row_bound (it is a public upper bound on the number of rows)",
            )
        )
    return report


def _conform(
    manifest: Manifest, frame: pl.DataFrame, unreadable: dict[str, int]
) -> tuple[pl.DataFrame, DatasetReport]:
    """Check, then refuse (raise) or clamp, as the manifest says."""
    report = _inspect(manifest, frame, unreadable)
    if report.errors:
        raise ManifestError(
            f"{manifest.path}: the data does not match its manifest: "
            + "; ".join(p.message for p in report.errors)
            + "; fix the data or the manifest (or set out_of_bounds: clamp)"
        )
    fixes: list[pl.Expr] = []
    touched = {p.column for p in report.problems if p.kind != "absent_category"}
    for col in manifest.columns:
        if col.name not in touched:
            continue
        c = pl.col(col.name)
        if col.type == "date":
            low, high = _DATE_RANGE
            c = pl.when((c < low) | (c > high)).then(None).otherwise(c)
        if col.bounds is not None:
            c = c.clip(*col.bounds)
        if col.categories is not None:
            known = pl.Series(list(col.categories), dtype=polars_type(col.type))
            c = pl.when(c.is_in(known.implode())).then(c).otherwise(None)
        fixes.append(c.cast(polars_type(col.type)).alias(col.name))
    if fixes:
        frame = frame.with_columns(fixes)
    return frame, report
