"""Mock data comes from public metadata only."""

import polars as pl
import pytest

from sandbox.catalog import load_catalog, load_frame
from sandbox.errors import SandboxError
from sandbox.mock import mock_frame, write_mock


def test_mock_shares_no_row_with_real_data_and_respects_metadata(pums_catalog_dir):
    manifest = load_catalog(pums_catalog_dir)["pums"]
    real = load_frame(manifest)
    mock = mock_frame(manifest, rows=5000, seed=7)
    assert mock.columns == real.columns
    assert mock.height == 5000
    assert mock.join(real, on=real.columns, how="semi").height == 0
    for spec in manifest.columns:
        col = mock[spec.name]
        if spec.categories is not None:
            assert set(col.unique().to_list()) <= set(spec.categories)
        if spec.bounds is not None:
            assert spec.bounds[0] <= col.min() and col.max() <= spec.bounds[1]


def test_mock_never_opens_the_data_file(tmp_path, pums_catalog_dir):
    text = (pums_catalog_dir / "pums.yaml").read_text(encoding="utf-8")
    (tmp_path / "pums.yaml").write_text(text, encoding="utf-8")  # no data file beside it
    manifest = load_catalog(tmp_path)["pums"]
    frame = mock_frame(manifest, rows=10)
    assert frame.height == 10


def test_mock_respects_privacy_unit_and_identifiers(tmp_path):
    (tmp_path / "v.yaml").write_text(
        "name: v\nfile: v.parquet\nclassification: 敏感\n"
        "privacy_unit: {id_column: pid, max_rows: 3}\ncolumns:\n"
        "  - {name: pid, type: string, role: identifier}\n"
        "  - {name: day, type: date, bounds: ['2024-01-01', '2024-01-31']}\n"
        "  - {name: ok, type: bool}\n",
        encoding="utf-8",
    )
    manifest = load_catalog(tmp_path)["v"]
    frame = mock_frame(manifest, rows=600, seed=1)
    assert frame["pid"].str.starts_with("MOCK-").all()
    assert frame.group_by("pid").len()["len"].max() <= 3
    assert frame.schema["day"] == pl.Date
    out = write_mock(manifest, tmp_path / "m.parquet", rows=20)
    assert pl.read_parquet(out).height <= 20
    with pytest.raises(SandboxError):
        mock_frame(manifest, rows=0)
