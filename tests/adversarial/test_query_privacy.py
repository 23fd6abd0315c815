"""epsilon and delta of every query go through policies.bounds; delta fits the dataset."""

import math

import polars as pl
import pytest

from policies.bounds import EPSILON_MIN
from policies.errors import PrivacyParameterError as PolicyPrivacyParameterError
from sandbox.catalog import load_catalog
from sandbox.errors import ManifestError, PrivacyParameterError
from sandbox.query import QueryEngine


def _catalog(tmp_path, rows: int, extra: str = "") -> QueryEngine:
    """A dataset whose string keys are not public: one key occurs in a single row."""
    codes = [f"k{i % 3}" for i in range(rows - 1)] + ["singleton"]
    pl.DataFrame({"code": codes, "v": [1] * rows}).write_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.parquet\nclassification: 内部\n"
        f"{extra}columns:\n"
        "  - {name: code, type: string}\n  - {name: v, type: int, bounds: [0, 1]}\n",
        encoding="utf-8",
    )
    return QueryEngine(load_catalog(tmp_path))


def _nothing_spent(engine: QueryEngine) -> None:
    assert engine.context("d").odometer_loss() == (0.0, 0.0)


def test_delta_one_half_with_partition_selection_is_refused(tmp_path):
    engine = _catalog(tmp_path, rows=300, extra="row_bound: 1000\n")
    with pytest.raises(PrivacyParameterError, match="delta"):
        engine.run("SELECT code, COUNT(*) AS n FROM d GROUP BY code", epsilon=1.0, delta=0.5)
    _nothing_spent(engine)


def test_delta_at_one_over_row_bound_is_refused_just_below_is_accepted(tmp_path):
    engine = _catalog(tmp_path, rows=300, extra="row_bound: 1000\n")
    sql = "SELECT code, COUNT(*) AS n FROM d GROUP BY code"
    with pytest.raises(PrivacyParameterError, match="1/row_bound"):
        engine.run(sql, epsilon=1.0, delta=1e-3)
    _nothing_spent(engine)
    result = engine.run(sql, epsilon=1.0, delta=9e-4)
    assert "singleton" not in {row["code"] for row in result.rows()}


def test_the_delta_rule_reads_public_metadata_not_the_rows(tmp_path):
    # Two datasets with the same manifest and very different sizes refuse the same deltas,
    # so a refusal tells the firm nothing about the number of rows.
    engines = []
    for name, rows in (("small", 50), ("large", 5000)):
        (tmp_path / name).mkdir()
        engines.append(_catalog(tmp_path / name, rows=rows))
    for engine in engines:
        with pytest.raises(PrivacyParameterError):  # default row_bound 1e8: delta < 1e-8
            engine.prepare("SELECT COUNT(*) FROM d", epsilon=1.0, delta=1e-6)
        engine.prepare("SELECT COUNT(*) FROM d", epsilon=1.0, delta=1e-9)


def test_manifest_max_delta_caps_delta(tmp_path):
    engine = _catalog(tmp_path, rows=300, extra="row_bound: 1000\nmax_delta: 1.0e-6\n")
    with pytest.raises(PrivacyParameterError, match="max_delta"):
        engine.run("SELECT code, COUNT(*) FROM d GROUP BY code", epsilon=1.0, delta=1e-5)
    _nothing_spent(engine)


def test_manifest_max_delta_must_be_a_valid_delta(tmp_path):
    with pytest.raises(ManifestError, match="max_delta"):
        _catalog(tmp_path, rows=10, extra="max_delta: .nan\n")


@pytest.mark.parametrize("epsilon", [1e-13, EPSILON_MIN / 2, 0.0, -1.0, math.nan, math.inf])
def test_epsilon_below_the_floor_or_not_finite_is_refused(pums_catalog_dir, epsilon):
    engine = QueryEngine(load_catalog(pums_catalog_dir))
    with pytest.raises(PrivacyParameterError, match="epsilon"):
        engine.run("SELECT COUNT(*) FROM pums", epsilon=epsilon)
    assert engine.context("pums").odometer_loss() == (0.0, 0.0)


def test_query_privacy_error_is_also_the_policies_error(pums_catalog_dir):
    engine = QueryEngine(load_catalog(pums_catalog_dir))
    with pytest.raises(PolicyPrivacyParameterError):
        engine.run("SELECT COUNT(*) FROM pums", epsilon=math.inf)
