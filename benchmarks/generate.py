"""Throughput of the synthetic data generator, against a plain Parquet rewrite of its output.

    python -m benchmarks.generate --rows 2400000          # ~10 million rows, a table
    python -m benchmarks.generate --rows 2400000 --json   # one JSON object

`--rows` is the number of persons (as in `sandbox.generate.generate`); the other datasets
scale from it, about 4x in total. The baseline writes the very same frames again with the
same Parquet settings, so `ratio_vs_write` is what generation costs on top of the I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import polars as pl

from sandbox.generate import CITIES, DATASETS, generate


def _rewrite_seconds(src: Path, dst: Path) -> float:
    frames = {f.name: pl.read_parquet(f) for f in sorted(src.glob("*.parquet"))}
    start = time.perf_counter()
    for name, frame in frames.items():
        frame.write_parquet(dst / name, compression="zstd", statistics=True)
    return time.perf_counter() - start


def run(rows: int, seed: int, out: Path | None) -> dict[str, object]:
    """Generate once into `out` (or a temporary directory) and time it against the baseline."""
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        target = out or Path(tmp) / "catalog"
        report = generate(target, rows=rows, seed=seed)
        baseline_dir = Path(tmp) / "baseline"
        baseline_dir.mkdir()
        baseline = _rewrite_seconds(target, baseline_dir)
        size = sum(f.stat().st_size for f in target.glob("*.parquet"))
    per_kind = {kind: sum(report.rows[f"{city}_{kind}"] for city in CITIES) for kind in DATASETS}
    return {
        "benchmark": "generate",
        "persons": rows,
        "seed": seed,
        "datasets": len(report.datasets),
        "rows_written": report.total_rows,
        "rows_per_kind": per_kind,
        "seconds": round(report.seconds, 3),
        "rows_per_s": round(report.total_rows / report.seconds),
        "parquet_bytes": size,
        "baseline_write_seconds": round(baseline, 3),
        "ratio_vs_write": round(report.seconds / baseline, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "polars": pl.__version__,
        },
    }


def _table(result: dict[str, object]) -> str:
    lines = [f"{'dataset kind':<20}{'rows':>14}"]
    for kind, n in result["rows_per_kind"].items():  # type: ignore[union-attr]
        lines.append(f"{kind:<20}{n:>14,}")
    lines += [
        f"{'total':<20}{result['rows_written']:>14,}",
        "",
        f"generate            {result['seconds']:>10.2f} s   {result['rows_per_s']:>12,} rows/s",
        f"baseline: rewrite   {result['baseline_write_seconds']:>10.2f} s   "
        f"(generation = {result['ratio_vs_write']}x a plain Parquet write of the same data)",
        f"parquet on disk     {result['parquet_bytes'] / 1e6:>10.1f} MB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_400_000, help="persons over all cities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the catalog here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.rows, args.seed, args.out)
    print(json.dumps(result, ensure_ascii=False) if args.json else _table(result))


if __name__ == "__main__":
    main()
