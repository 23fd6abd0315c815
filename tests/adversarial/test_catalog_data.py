"""Data that breaks its manifest: reported by column and count, never a value, never a crash."""

import polars as pl
import pytest

from sandbox.catalog import check_dataset, load_catalog, load_manifest
from sandbox.errors import ManifestError, SandboxError
from sandbox.query import QueryEngine

SECRET = 123456789012.25  # a raw value that must never appear in an error


def _dataset(tmp_path, frame: pl.DataFrame, columns: str, extra: str = "") -> QueryEngine:
    frame.write_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.yaml").write_text(
        f"name: d\nfile: d.parquet\nclassification: 内部\nrow_bound: 1000\n{extra}columns:\n"
        + columns,
        encoding="utf-8",
    )
    return QueryEngine(load_catalog(tmp_path))


def _floats(tmp_path, extra: str = "") -> QueryEngine:
    frame = pl.DataFrame({"x": [0.5, SECRET, 0.25, 0.75]})
    return _dataset(tmp_path, frame, "  - {name: x, type: float, bounds: [0, 1]}\n", extra)


def test_out_of_bounds_value_is_refused_by_column_and_count_without_the_value(tmp_path):
    engine = _floats(tmp_path)
    with pytest.raises(ManifestError) as info:
        engine.run("SELECT COUNT(*) FROM d", epsilon=1.0)
    message = str(info.value)
    assert "'x'" in message and "1 rows outside the declared bounds" in message
    for leak in ("123456789012", "1.2346e20", "1.23457e+11", "e20"):
        assert leak not in message


def test_out_of_bounds_values_are_clamped_when_the_manifest_says_so(tmp_path):
    engine = _floats(tmp_path, extra="out_of_bounds: clamp\n")
    total = engine.run("SELECT SUM(x) AS s FROM d", epsilon=1e7).rows()[0]["s"]["value"]
    assert total == pytest.approx(0.5 + 1.0 + 0.25 + 0.75, abs=1e-3)
    report = engine.check("d")
    assert report.ok and [p.kind for p in report.warnings] == ["out_of_bounds"]


def test_unbounded_float_with_a_huge_value_loads(tmp_path):
    frame = pl.DataFrame({"x": [0.5, SECRET, 3.0]})
    engine = _dataset(tmp_path, frame, "  - {name: x, type: float}\n")
    n = engine.run("SELECT COUNT(*) AS n FROM d WHERE x > 1000000", epsilon=1e7).rows()[0]
    assert n["n"]["value"] == 1


def test_unknown_categories_are_refused_at_registration_not_answered_as_zero(tmp_path):
    frame = pl.DataFrame({"sex": ["M", "F", "F", "M"]})
    engine = _dataset(tmp_path, frame, "  - {name: sex, type: string, categories: [男, 女]}\n")
    with pytest.raises(ManifestError) as info:
        engine.run("SELECT sex, COUNT(*) FROM d GROUP BY sex", epsilon=1.0)
    message = str(info.value)
    assert "'sex'" in message and "4 rows hold a category" in message
    assert "'M'" not in message and "'F'" not in message


def test_check_dataset_reports_counts_and_absent_categories(tmp_path):
    frame = pl.DataFrame({"kind": ["a", "a", "zz", None], "n": [1, 2, 50, 3]})
    _dataset(
        tmp_path,
        frame,
        "  - {name: kind, type: string, categories: [a, b, c]}\n"
        "  - {name: n, type: int, bounds: [0, 10]}\n",
    )
    report = check_dataset(load_manifest(tmp_path / "d.yaml"))
    found = {(p.column, p.kind): (p.count, p.severity) for p in report.problems}
    assert found == {
        ("kind", "unknown_category"): (1, "error"),
        ("kind", "absent_category"): (2, "warning"),
        ("n", "out_of_bounds"): (1, "error"),
    }
    assert not report.ok
    assert all("zz" not in line and "50" not in line for line in report.lines())


def test_more_rows_than_row_bound_is_refused(tmp_path):
    frame = pl.DataFrame({"v": list(range(5))})
    frame.write_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.parquet\nclassification: 内部\nrow_bound: 3\ncolumns:\n"
        "  - {name: v, type: int, bounds: [0, 10]}\n",
        encoding="utf-8",
    )
    engine = QueryEngine(load_catalog(tmp_path))
    with pytest.raises(ManifestError, match="row_bound"):
        engine.run("SELECT COUNT(*) FROM d", epsilon=1.0)


def test_infinite_int_bounds_are_a_manifest_error(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.csv\nclassification: 内部\ncolumns:\n"
        "  - {name: v, type: int, bounds: [0, .inf]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match="bounds"):
        load_manifest(tmp_path / "d.yaml")


def test_manifest_that_is_not_utf8_is_a_manifest_error(tmp_path):
    (tmp_path / "d.yaml").write_bytes(b"name: d\ntitle: \xff\xfe\n")
    with pytest.raises(ManifestError, match="UTF-8"):
        load_manifest(tmp_path / "d.yaml")


def test_lone_surrogate_escape_in_a_manifest_is_a_manifest_error(tmp_path):
    (tmp_path / "d.yaml").write_text(
        'name: d\ntitle: "\\ud800"\nfile: d.csv\nclassification: 内部\ncolumns:\n'
        "  - {name: v, type: int}\n",
        encoding="utf-8",
    )
    with pytest.raises(ManifestError, match="Unicode"):
        load_manifest(tmp_path / "d.yaml")


def test_frames_handed_to_the_engine_are_checked_too(tmp_path):
    engine = _floats(tmp_path)
    frame = pl.DataFrame({"x": [0.5, SECRET]})
    engine = QueryEngine(load_catalog(tmp_path), frames={"d": frame})
    with pytest.raises(SandboxError) as info:
        engine.run("SELECT COUNT(*) FROM d", epsilon=1.0)
    assert "123456789012" not in str(info.value)
