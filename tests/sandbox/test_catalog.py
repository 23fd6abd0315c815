"""Manifests: validation errors name the field; loading enforces the privacy unit."""

import polars as pl
import pytest

from sandbox.catalog import Classification, load_catalog, load_frame, load_manifest
from sandbox.errors import CatalogError, ManifestError

GOOD = """\
name: visits
file: visits.csv
classification: 敏感
privacy_unit: {id_column: pid, max_rows: 2}
columns:
  - {name: pid, type: string, role: identifier}
  - {name: cost, type: float, bounds: [0, 100]}
  - {name: kind, type: string, categories: [a, b]}
  - {name: day, type: date, bounds: ["2024-01-01", "2024-12-31"]}
"""


def _write(tmp_path, text, name="visits.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_manifest_loads(tmp_path):
    m = load_manifest(_write(tmp_path, GOOD))
    assert m.classification is Classification.SENSITIVE
    assert m.column("kind").public_keys() == ("a", "b")
    assert m.column("cost").bounds == (0.0, 100.0)
    assert str(m.column("day").bounds[0]) == "2024-01-01"
    assert "path" not in m.public_metadata()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("classification: 敏感", "classification: secret"), "classification"),
        (("type: float", "type: decimal"), "columns[cost].type"),
        (("bounds: [0, 100]", "bounds: [100, 0]"), "columns[cost]"),
        (("bounds: [0, 100]", "bounds: [0, lots]"), "not a valid float"),
        (("categories: [a, b]", "categories: [a, a]"), "distinct"),
        (("id_column: pid", "id_column: person"), "privacy_unit.id_column"),
        (("max_rows: 2", "max_rows: 0"), "privacy_unit.max_rows"),
        (("name: visits", "name: Visits!"), "name"),
        (("file: visits.csv\n", ""), "file"),
        (("- {name: kind", "- {name: cost"), "duplicate column names"),
        (("role: identifier", "role: secret"), "columns[pid].role"),
    ],
)
def test_invalid_manifests_name_the_field(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "absent.yaml")


def test_catalog_errors(tmp_path):
    with pytest.raises(CatalogError, match="not a directory"):
        load_catalog(tmp_path / "nope")
    with pytest.raises(CatalogError, match="holds no manifest"):
        load_catalog(tmp_path)
    _write(tmp_path, GOOD)
    _write(tmp_path, GOOD, name="again.yaml")
    with pytest.raises(ManifestError, match="also in"):
        load_catalog(tmp_path)


def test_load_frame_truncates_per_person_and_drops_identifiers(tmp_path):
    _write(tmp_path, GOOD)
    rows = ["pid,cost,kind,day"] + [f"p1,{i},a,2024-01-0{i + 1}" for i in range(5)]
    rows += ["p2,7.5,b,2024-02-01", "p3,NaN,b,2024-03-01"]
    (tmp_path / "visits.csv").write_text("\n".join(rows) + "\n")
    frame = load_frame(load_catalog(tmp_path)["visits"])
    assert "pid" not in frame.columns
    assert frame.height == 4  # p1 keeps 2 of 5 rows, p2 and p3 one each
    assert frame.schema["day"] == pl.Date
    assert frame["cost"].null_count() == 1  # NaN became null


def test_scientific_notation_integers_are_read(pums_catalog_dir):
    frame = load_frame(load_catalog(pums_catalog_dir)["pums"])
    assert frame.height == 1000
    assert frame["income"].dtype == pl.Int64
    assert frame["income"].null_count() == 0
    assert frame["income"].sum() == 34380084


def test_missing_data_column_is_reported(tmp_path):
    _write(tmp_path, GOOD)
    (tmp_path / "visits.csv").write_text("pid,cost\np1,1.0\n")
    with pytest.raises(ManifestError, match=r"columns: not in visits.csv: \['kind', 'day'\]"):
        load_frame(load_catalog(tmp_path)["visits"])


def test_clamp_policy_clamps_dates_and_drops_unknown_categories(tmp_path):
    import datetime as dt

    from sandbox.catalog import check_dataset, load_checked

    pl.DataFrame(
        {
            "day": [dt.date(2023, 5, 1), dt.date(2024, 6, 1), dt.date(2030, 1, 1)],
            "kind": ["a", "x", "b"],
        }
    ).write_parquet(tmp_path / "d.parquet")
    _write(
        tmp_path,
        "name: d\nfile: d.parquet\nclassification: 内部\nout_of_bounds: clamp\ncolumns:\n"
        '  - {name: day, type: date, bounds: ["2024-01-01", "2024-12-31"]}\n'
        "  - {name: kind, type: string, categories: [a, b]}\n",
        name="d.yaml",
    )
    manifest = load_manifest(tmp_path / "d.yaml")
    frame, report = load_checked(manifest)
    assert frame["day"].to_list() == [
        dt.date(2024, 1, 1),
        dt.date(2024, 6, 1),
        dt.date(2024, 12, 31),
    ]
    assert frame["kind"].to_list() == ["a", None, "b"]
    assert report.ok and {p.kind for p in report.warnings} == {"out_of_bounds", "unknown_category"}
    assert check_dataset(manifest).lines() == report.lines()


def test_shipped_example_matches_its_manifest(pums_catalog_dir):
    from sandbox.catalog import check_dataset

    report = check_dataset(load_catalog(pums_catalog_dir)["pums"])
    assert report.ok and report.lines() == []
