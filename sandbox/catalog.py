"""The dataset catalog: manifests a department declares, validated, and the data they describe.

A catalog is a directory; each ``*.yaml`` file at its top level is one dataset's manifest
(format: ``docs/catalog.md``). Everything in a manifest is public metadata.

>>> catalog = load_catalog("examples/pums")          # doctest: +SKIP
>>> catalog["pums"].column("age").bounds             # doctest: +SKIP
(0, 100)
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandbox.errors import CatalogError, ManifestError

ColumnType = Literal["int", "float", "string", "bool", "date"]

#: The largest integer range whose every value is treated as a public group-by key.
MAX_ENUMERABLE_INT_KEYS = 1000

#: Used when a manifest gives no ``row_bound``. It only enters the rounding-error term of
#: floating-point sums, so a loose bound costs little accuracy.
DEFAULT_ROW_BOUND = 100_000_000


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
            cats = tuple(_coerce(self.type, v, "categories") for v in self.categories)
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
    row_bound: int = Field(default=DEFAULT_ROW_BOUND, ge=1)
    columns: tuple[ColumnSpec, ...]
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError(f"dataset name {value!r} must be lowercase letters, digits, '_'")
        return value

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


def _parse_bounds(kind: str, bounds: tuple[Any, Any]) -> tuple[Any, Any]:
    if kind not in ("int", "float", "date"):
        raise ValueError(f"bounds are only allowed on int, float and date columns, not {kind}")
    low, high = (_coerce(kind, v, "bounds") for v in bounds)
    if low > high:
        raise ValueError(f"bounds: lower {low!r} exceeds upper {high!r}")
    return low, high


def _coerce(kind: str, value: Any, field: str) -> Any:
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
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {value!r} is not a valid {kind}") from None


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate one manifest file. Errors name the file and the offending field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a mapping of fields (see docs/catalog.md)")
    try:
        return Manifest.model_validate({**raw, "path": path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _field_path(raw, err["loc"])
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ManifestError(f"{path}: invalid manifest: " + "; ".join(problems)) from None


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
    root = Path(root)
    if not root.is_dir():
        raise CatalogError(f"catalog {root} is not a directory of manifests (*.yaml)")
    manifests: dict[str, Manifest] = {}
    for path in sorted(root.glob("*.yaml")):
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


def load_frame(manifest: Manifest) -> pl.DataFrame:
    """Read a dataset's rows on its own node, typed as declared and with the privacy unit enforced.

    Rows beyond ``privacy_unit.max_rows`` per identifier are dropped (keeping the first in
    file order), so the declared contribution bound holds. Identifier columns are dropped after
    that: they can never be queried. NaN becomes null. Only the node calls this.
    """
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
        raise ManifestError(f"{manifest.path}: file: cannot read {path}: {exc}") from None
    missing = [c.name for c in manifest.columns if c.name not in frame.columns]
    if missing:
        raise ManifestError(f"{manifest.path}: columns: not in {path.name}: {missing}")
    casts = []
    for col in manifest.columns:
        expr = pl.col(col.name)
        if col.type == "int" and frame.schema[col.name] == pl.String:
            expr = expr.cast(pl.Float64, strict=False)  # accepts "1e+05"
        if col.type == "date" and frame.schema[col.name] == pl.String:
            expr = expr.str.to_date(strict=False)
        expr = expr.cast(polars_type(col.type), strict=False)
        if col.type == "float":
            expr = expr.fill_nan(None)
        casts.append(expr.alias(col.name))
    frame = frame.select(casts)
    unit = manifest.privacy_unit
    if unit.id_column is not None:
        frame = frame.filter(pl.int_range(pl.len()).over(unit.id_column) < unit.max_rows)
    identifiers = [c.name for c in manifest.columns if c.role == "identifier"]
    return frame.drop(identifiers)
