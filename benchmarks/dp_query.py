"""Warm DP query vs the same plain Polars query, on the same data in the same process.

    python -m benchmarks.dp_query --rows 10000000 --json

The DP side is the full engine path: parse the SQL, calibrate, build the OpenDP measurement,
release through the dataset's OpenDP context, compute intervals. The baseline runs the same
grouped count and clipped sum with plain Polars on the same in-memory rows. Both are timed
warm (after one untimed run), and the medians of the repeats are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from sandbox.catalog import load_catalog, load_frame
from sandbox.query import QueryEngine

CITIES = ["济南", "青岛", "日照", "德州"]
SQL = "SELECT city, COUNT(*) AS n, SUM(income) AS total FROM bench GROUP BY city"


def make_catalog(root: Path, rows: int, seed: int = 0) -> Path:
    gen = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "city": pl.Series(np.array(CITIES)[gen.integers(0, 4, rows)]),
            "age": gen.integers(0, 100, rows),
            "income": gen.lognormal(10.5, 0.6, rows).clip(0, 1_000_000),
        }
    )
    frame.write_parquet(root / "bench.parquet")
    (root / "bench.yaml").write_text(
        "name: bench\nfile: bench.parquet\nclassification: 内部\n"
        f"row_bound: {2 * rows}\ncolumns:\n"
        f"  - {{name: city, type: string, categories: [{', '.join(CITIES)}]}}\n"
        "  - {name: age, type: int, bounds: [0, 100]}\n"
        "  - {name: income, type: float, bounds: [0, 1000000]}\n",
        encoding="utf-8",
    )
    return root


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(rows: int, repeats: int = 15, epsilon: float = 1.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        catalog = load_catalog(make_catalog(Path(tmp), rows))
        frame = load_frame(catalog["bench"])
        engine = QueryEngine(catalog, frames={"bench": frame})
        start = time.perf_counter()
        engine.context("bench")
        context_seconds = time.perf_counter() - start

        def dp_query() -> None:
            engine.run(SQL, epsilon=epsilon)

        def raw_query() -> None:
            frame.lazy().group_by("city").agg(
                pl.len().alias("n"),
                pl.col("income").fill_null(0.0).clip(0.0, 1_000_000.0).sum().alias("total"),
            ).collect()

        start = time.perf_counter()
        dp_query()
        first_seconds = time.perf_counter() - start
        naive_seconds = _naive_opendp_seconds(frame, epsilon, rows)
        dp_seconds = _median_seconds(dp_query, repeats)
        raw_seconds = _median_seconds(raw_query, repeats)
    return {
        "rows": rows,
        "query": SQL,
        "epsilon": epsilon,
        "repeats": repeats,
        "context_seconds": round(context_seconds, 4),
        "first_query_seconds": round(first_seconds, 4),
        "dp_seconds": round(dp_seconds, 5),
        "raw_seconds": round(raw_seconds, 5),
        "ratio": round(dp_seconds / raw_seconds, 3),
        "naive_opendp_seconds": round(naive_seconds, 4),
        "naive_ratio": round(naive_seconds / raw_seconds, 1),
    }


def _naive_opendp_seconds(frame: pl.DataFrame, epsilon: float, rows: int) -> float:
    """The same release done the straightforward way: a new OpenDP Context over the rows and
    a query whose noise scale OpenDP finds by binary search (one run: it is slow)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    start = time.perf_counter()
    context = dp.Context.compositor(
        data=frame.lazy(),
        privacy_unit=dp.unit_of(contributions=1),
        privacy_loss=dp.loss_of(epsilon=epsilon),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=[], max_length=2 * rows)],
    )
    keys = pl.DataFrame({"city": CITIES})
    query = (
        context.query()
        .group_by("city")
        .agg(
            dp.len(signed=True),
            pl.col("income").fill_null(0.0).dp.sum((0.0, 1_000_000.0)),
        )
        .with_keys(keys)
    )
    query.release().collect()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run(args.rows, args.repeats)
    if args.json:
        print(json.dumps(result))
        return
    print(f"rows                 {result['rows']:,}")
    print(f"context build (once) {result['context_seconds']:.3f} s")
    print(f"first query (cold)   {result['first_query_seconds']:.3f} s")
    print(f"warm DP query        {result['dp_seconds'] * 1000:.1f} ms (median of {args.repeats})")
    print(f"plain Polars query   {result['raw_seconds'] * 1000:.1f} ms")
    print(f"ratio                {result['ratio']:.2f}x")
    print(
        f"naive OpenDP (1 run) {result['naive_opendp_seconds']:.3f} s "
        f"({result['naive_ratio']:.0f}x the plain query)"
    )


if __name__ == "__main__":
    main()
