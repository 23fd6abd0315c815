"""Mock data for firms, generated from a manifest's public metadata only.

A firm explores a dataset's shape and writes its queries against mock rows before spending
any privacy budget. The generator reads the manifest and nothing else: it never opens the data
file, so mock rows carry no information about real people. Values are drawn uniformly within
the declared bounds and categories; identifiers are fresh ``MOCK-`` pseudonyms.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from sandbox.catalog import ColumnSpec, Manifest, polars_type
from sandbox.errors import SandboxError

#: Default range for numbers whose manifest declares no bounds (mock data only).
_UNBOUNDED_RANGE = (0, 1000)

#: Most mock rows generated at once.
MAX_MOCK_ROWS = 10_000_000


def mock_frame(manifest: Manifest, rows: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Rows shaped like the dataset, drawn from its public metadata only."""
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_MOCK_ROWS:
        raise SandboxError(f"rows must be an integer from 1 to {MAX_MOCK_ROWS}, got {rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SandboxError(f"seed must be a non-negative integer, got {seed!r}")
    gen = np.random.default_rng(seed)
    columns = {spec.name: _mock_column(spec, rows, gen) for spec in manifest.columns}
    unit = manifest.privacy_unit
    if unit.id_column is not None and unit.max_rows > 1:
        # Several rows per mock person, never more than the declared bound.
        people = max(1, rows // min(unit.max_rows, 3))
        ids = np.sort(gen.integers(0, people, rows))
        columns[unit.id_column] = pl.Series([f"MOCK-{i:09d}" for i in ids])
        frame = pl.DataFrame(columns)
        return frame.filter(pl.int_range(pl.len()).over(unit.id_column) < unit.max_rows)
    return pl.DataFrame(columns)


def _mock_column(spec: ColumnSpec, rows: int, gen: np.random.Generator) -> pl.Series:
    dtype = polars_type(spec.type)
    if spec.role == "identifier":
        return pl.Series(spec.name, [f"MOCK-{i:09d}" for i in range(rows)], dtype=pl.String)
    if spec.categories is not None:
        picks = gen.integers(0, len(spec.categories), rows)
        return pl.Series(spec.name, [spec.categories[i] for i in picks], dtype=dtype)
    if spec.type == "bool":
        return pl.Series(spec.name, gen.integers(0, 2, rows).astype(bool))
    if spec.type == "string":
        return pl.Series(spec.name, [f"mock_{i}" for i in gen.integers(0, 50, rows)])
    if spec.type == "date":
        low, high = spec.bounds or (dt.date(2024, 1, 1), dt.date(2024, 12, 31))
        offsets = gen.integers(0, (high - low).days + 1, rows)
        return pl.Series(spec.name, [low + dt.timedelta(days=int(d)) for d in offsets])
    low, high = spec.bounds or _UNBOUNDED_RANGE
    if spec.type == "int":
        return pl.Series(spec.name, gen.integers(low, high + 1, rows), dtype=dtype)
    return pl.Series(spec.name, gen.uniform(low, high, rows), dtype=dtype)


def write_mock(manifest: Manifest, out: Path, rows: int = 1000, seed: int = 0) -> Path:
    """Write mock rows as CSV or Parquet (by the file suffix of ``out``)."""
    frame = mock_frame(manifest, rows, seed)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            frame.write_parquet(out)
        else:
            frame.write_csv(out)
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SandboxError(
            f"cannot write mock rows to {out} ({reason}); pass an --out path in a writable "
            "directory"
        ) from None
    return out
