"""The dataset catalog: manifests a department declares, validated, and the data they describe.

A catalog is a directory; each ``*.yaml`` file at its top level is one dataset's manifest
(format: ``docs/catalog.md``). Everything in a manifest is public metadata.

>>> catalog = load_catalog("examples/pums")          # doctest: +SKIP
>>> catalog["pums"].column("age").bounds             # doctest: +SKIP
(0, 100)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policies.bounds import check_delta
from policies.errors import PrivacyParameterError as _PolicyPrivacyParameterError
from sandbox.errors import CatalogError, ManifestError

ColumnType = Literal["int", "float", "string", "bool", "date"]

#: The largest integer range whose every value is treated as a public group-by key.
MAX_ENUMERABLE_INT_KEYS = 1000

#: Used when a manifest gives no ``row_bound``: a public upper bound on the number of rows.
#: It bounds the number of groups a query may see and sets the default delta limit
#: (delta < 1 / row_bound), so a bound close to the real size allows the largest delta.
DEFAULT_ROW_BOUND = 100_000_000

#: The largest ``row_bound`` a manifest may declare (sums of fixed-point values stay in 64 bits).
MAX_ROW_BOUND = 1_000_000_000


class Classification(StrEnum):
    """Classification levels (数据分级)."""

    PUBLIC = "公开"
    INTERNAL = "内部"
    SENSITIVE = "敏感"
    CORE = "核心"


class ColumnSpec(BaseModel):
    """One column's public metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: ColumnType
    role: Literal["attribute", "identifier"] = "attribute"
    bounds: tuple[Any, Any] | None = None
    categories: tuple[Any, ...] | None = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f"column name {value!r} must be letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _check_metadata(self) -> ColumnSpec:
        if self.bounds is not None:
            object.__setattr__(self, "bounds", _parse_bounds(self.type, self.bounds))
        if self.categories is not None:
            cats = tuple(coerce_value(self.type, v, "categories") for v in self.categories)
            if not cats:
                raise ValueError("categories must not be empty")
            if len(set(cats)) != len(cats):
                raise ValueError("categories must be distinct")
            object.__setattr__(self, "categories", cats)
        if self.role == "identifier" and (self.bounds or self.categories):
            raise ValueError("an identifier column takes neither bounds nor categories")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in ("int", "float")

    def public_keys(self) -> tuple[Any, ...] | None:
        """The column's values if public: categories, bool, or a small int or date range."""
        if self.categories is not None:
            return self.categories
        if self.type == "bool":
            return (False, True)
        if self.type == "int" and self.bounds is not None:
            low, high = self.bounds
            if high - low + 1 <= MAX_ENUMERABLE_INT_KEYS:
                return tuple(range(low, high + 1))
        if self.type == "date" and self.bounds is not None:
            low, high = self.bounds
            days = (high - low).days + 1
            if days <= MAX_ENUMERABLE_INT_KEYS:
                return tuple(low + dt.timedelta(days=i) for i in range(days))
        return None


class PrivacyUnit(BaseModel):
    """Who is protected: one row per person, or all rows sharing ``id_column``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: str | None = None
    max_rows: int = Field(default=1, ge=1)


class Manifest(BaseModel):
    """A dataset's manifest. ``path`` is where it was read from (not part of the file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    department: str = ""
    city: str | None = None
    description: str = ""
    file: str
    classification: Classification
    privacy_unit: PrivacyUnit = PrivacyUnit()
    row_bound: int = Field(default=DEFAULT_ROW_BOUND, ge=1, le=MAX_ROW_BOUND)
    max_delta: float | None = None
    out_of_bounds: Literal["clamp", "refuse"] = "refuse"
    columns: tuple[ColumnSpec, ...]
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"dataset name {value!r} must be lowercase letters, digits, '_'")
        return value

    @field_validator("max_delta")
    @classmethod
    def _delta_cap(cls, value: float | None) -> float | None:
        if value is None:
            return None
        try:
            return check_delta(value, "max_delta")
        except _PolicyPrivacyParameterError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _check_columns(self) -> Manifest:
        if not self.columns:
            raise ValueError("columns: declare at least one column")
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"columns: duplicate column names {duplicates}")
        unit = self.privacy_unit.id_column
        if unit is not None and unit not in names:
            raise ValueError(f"privacy_unit.id_column: {unit!r} is not a declared column")
        if unit is None and self.privacy_unit.max_rows != 1:
            raise ValueError("privacy_unit.max_rows: set id_column when a person has several rows")
        return self

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def data_path(self) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / self.file).resolve()

    def public_metadata(self) -> dict[str, Any]:
        """What a firm may see about this dataset (everything but local paths)."""
        return self.model_dump(mode="json", exclude={"path"})

    def delta_limit(self) -> str:
        """The rule a query's delta must satisfy on this dataset, in words."""
        rule = f"below 1/row_bound = {1 / self.row_bound:g}"
        if self.max_delta is not None:
            rule += f" and at most max_delta = {self.max_delta:g}"
        return rule


def _parse_bounds(kind: str, bounds: tuple[Any, Any]) -> tuple[Any, Any]:
    if kind not in ("int", "float", "date"):
        raise ValueError(f"bounds are only allowed on int, float and date columns, not {kind}")
    low, high = (coerce_value(kind, v, "bounds") for v in bounds)
    if low > high:
        raise ValueError(f"bounds: lower {low!r} exceeds upper {high!r}")
    return low, high


def coerce_value(kind: str, value: Any, field: str) -> Any:
    """Convert a YAML value to the column type, or raise a ValueError naming the field."""
    try:
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError
            return out
        if kind == "date":
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{field}: {value!r} is not a valid {kind}") from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate one manifest file. Errors name the file and the offending field."""
    try:
        path = Path(path)
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{path}: a manifest is at most {MAX_MANIFEST_BYTES} bytes; this one has {size}"
            )
        text = path.read_text(encoding="utf-8")
    except ManifestError:
        raise
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: a manifest must be UTF-8 text") from None
    except (TypeError, ValueError):
        raise ManifestError(f"{path!r} is not a valid manifest path") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ManifestError(f"{path}: not valid YAML: {reason}") from None
    except RecursionError:
        raise ManifestError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a mapping of fields (see docs/catalog.md)")
    try:
        manifest = Manifest.model_validate({**raw, "path": path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _field_path(raw, err["loc"])
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ManifestError(f"{path}: invalid manifest: " + "; ".join(problems)) from None
    except (RecursionError, TypeError, ValueError, OverflowError):
        raise ManifestError(f"{path}: invalid manifest; see docs/catalog.md") from None
    try:  # everything in a manifest is shown and logged: it must be plain Unicode text
        json.dumps(manifest.public_metadata(), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):
        raise ManifestError(
            f"{path}: the manifest holds text that is not valid Unicode (a lone surrogate "
            "escape?); write it as plain UTF-8"
        ) from None
    return manifest


#: The largest manifest file read (a manifest is a page of metadata, not data).
MAX_MANIFEST_BYTES = 1_000_000


def _field_path(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Render a pydantic location, naming columns by name rather than index."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"[{name}]" if name else f"[{item}]")
            continue
        if isinstance(node, dict):
            node = node.get(item)
        parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "manifest"


class Catalog:
    """The datasets of one catalog directory, by name."""

    def __init__(self, manifests: dict[str, Manifest], root: Path):
        self._manifests = manifests
        self.root = root

    def __getitem__(self, name: str) -> Manifest:
        try:
            return self._manifests[name]
        except KeyError:
            known = ", ".join(sorted(self._manifests)) or "none"
            raise CatalogError(f"unknown dataset {name!r}; the catalog has: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._manifests

    def __iter__(self) -> Iterator[Manifest]:
        return iter(sorted(self._manifests.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._manifests)


def load_catalog(root: str | Path) -> Catalog:
    """Load every ``*.yaml`` manifest at the top level of ``root``."""
    try:
        root = Path(root)
        is_dir = root.is_dir()
        paths = sorted(root.glob("*.yaml")) if is_dir else []
    except (OSError, TypeError, ValueError):
        raise CatalogError(f"catalog {root!r} is not a directory of manifests (*.yaml)") from None
    if not is_dir:
        raise CatalogError(f"catalog {root} is not a directory of manifests (*.yaml)")
    manifests: dict[str, Manifest] = {}
    for path in paths:
        manifest = load_manifest(path)
        if manifest.name in manifests:
            other = manifests[manifest.name].path
            raise ManifestError(f"{path}: name: dataset {manifest.name!r} is also in {other}")
        manifests[manifest.name] = manifest
    if not manifests:
        raise CatalogError(f"catalog {root} holds no manifest (*.yaml); see docs/catalog.md")
    return Catalog(manifests, root)


_POLARS_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
}


def polars_type(kind: str) -> pl.DataType:
    return _POLARS_TYPES[kind]


#: The dates Python can represent; data outside them is unreadable and treated as missing.
_DATE_RANGE = (dt.date(1, 1, 1), dt.date(9999, 12, 31))

ProblemKind = Literal[
    "out_of_bounds", "unknown_category", "absent_category", "unreadable", "too_many_rows"
]


@dataclass(frozen=True)
class DataProblem:
    """One way a dataset's rows break its manifest. Names a column and a count, never a value."""

    column: str | None
    kind: ProblemKind
    count: int
    severity: Literal["error", "warning"]
    message: str


@dataclass
class DatasetReport:
    """How a dataset's rows match its manifest, as found when the node loads it.

    ``errors`` stop the dataset from being served; ``warnings`` say what was done instead
    (values clamped, treated as missing). Messages name columns and counts, never values.
    """

    dataset: str
    out_of_bounds: str
    problems: list[DataProblem] = field(default_factory=list)

    @property
    def errors(self) -> list[DataProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[DataProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """One line per problem, errors first."""
        ordered = self.errors + self.warnings
        return [f"{p.severity}: {self.dataset}: {p.message}" for p in ordered]


def check_dataset(manifest: Manifest, frame: pl.DataFrame | None = None) -> DatasetReport:
    """Compare a dataset's rows with its manifest, without changing or refusing anything.

    Reads the data file unless ``frame`` is given. Raises :class:`ManifestError` only if the
    data cannot be read at all (missing file or columns).

    >>> report = check_dataset(load_manifest("examples/pums/pums.yaml"))   # doctest: +SKIP
    >>> report.ok, report.lines()                                           # doctest: +SKIP
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
            frame = pl.read_csv(path, infer_schema_length=0)  # all strings; cast below
        elif path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            raise ManifestError(f"{manifest.path}: file: {path.name} is neither .csv nor .parquet")
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = type(exc).__name__
        raise ManifestError(f"{manifest.path}: file: cannot read {path.name} ({reason})") from None
    return _typed(manifest, frame)


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
    bad = "error" if policy == "refuse" else "warning"
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
