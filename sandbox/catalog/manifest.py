"""A dataset's manifest: the public metadata a department declares, validated.

Everything in a manifest is public: the columns with their types, public bounds and
categories, the privacy unit, a public upper bound on the rows, the classification.

>>> col = ColumnSpec(name="age", type="int", bounds=(0, 100))
>>> col.public_keys()[:3], len(col.public_keys())
((0, 1, 2), 101)
>>> ColumnSpec(name="sex", type="string", categories=["男", "女"]).public_keys()
('男', '女')
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.bounds import check_delta
from policies.errors import PrivacyParameterError as _PolicyPrivacyParameterError

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
    #: The column's header in the data file when it is not a valid name (``hours-per-week``,
    #: ``marital status``): the file's column ``source`` is read as ``name``.
    source: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(
                f"column name {value!r} must be letters, digits and underscores; for a file "
                "header with other characters give a valid name and the header as source "
                "(name: hours_per_week, source: hours-per-week)"
            )
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
    #: The CSV field delimiter; None: detected from the file's first lines (see
    #: :func:`sandbox.catalog.conform.detect_separator`).
    separator: str | None = Field(default=None, min_length=1, max_length=1)
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
        sources = [c.source or c.name for c in self.columns]
        clashes = sorted({n for n in sources if sources.count(n) > 1})
        if clashes:
            raise ValueError(f"columns: two columns read the same file column {clashes}")
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
        data = self.model_dump(mode="json", exclude={"path"})
        # Fields added later are left out while unset, so existing metadata stays identical.
        if data.get("separator") is None:
            data.pop("separator", None)
        for column in data["columns"]:
            if column.get("source") is None:
                column.pop("source", None)
        return data

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


_POLARS_TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
}


def polars_type(kind: str) -> pl.DataType:
    return _POLARS_TYPES[kind]
