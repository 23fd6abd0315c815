"""Real-data frictions in the catalog: CSV delimiters (detected or declared), file headers
that are not valid names (``source`` in the manifest), and string labels mapped to classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from federation.job import JobSpec
from sandbox.catalog import load_catalog, load_frame, load_manifest
from sandbox.catalog.conform import detect_separator
from sandbox.errors import ManifestError
from sandbox.training import CatalogLoader, TrainingError, encode_label

ROWS = [
    (39, "Bachelors", 40, "<=50K"),
    (50, "Masters", 50, ">50K"),
    (38, "HS-grad", 40, "<=50K"),
    (53, "Doctorate", 60, ">50K"),
    (28, "Bachelors", 35, "<=50K"),
]
HEADER = ("age", "education", "hours-per-week", "income class")


def _write(folder: Path, sep: str, **manifest: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [sep.join(HEADER)]
    for age, educ, hours, label in ROWS:
        lines.append(
            sep.join([str(age), f'"{educ}, x"' if sep != "," else educ, str(hours), label])
        )
    (folder / "adult.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = {
        "name": "adult",
        "file": "adult.csv",
        "classification": "内部",
        "columns": [
            {"name": "age", "type": "int", "bounds": [17, 90]},
            {"name": "education", "type": "string"},
            {
                "name": "hours_per_week",
                "type": "int",
                "bounds": [1, 99],
                "source": "hours-per-week",
            },
            {
                "name": "income",
                "type": "string",
                "categories": ["<=50K", ">50K"],
                "source": "income class",
            },
        ],
        **manifest,
    }
    path = folder / "adult.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_is_detected_and_headers_mapped(tmp_path: Path, sep: str) -> None:
    path = _write(tmp_path, sep)
    assert detect_separator(path.parent / "adult.csv") == sep
    frame = load_frame(load_manifest(path))
    assert frame.columns == ["age", "education", "hours_per_week", "income"]
    assert frame["hours_per_week"].to_list() == [40, 50, 40, 60, 35]
    assert frame["income"].to_list()[:2] == ["<=50K", ">50K"]


def test_declared_separator_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, ";", separator=",")  # wrong on purpose: the manifest is obeyed
    with pytest.raises(ManifestError):
        load_frame(load_manifest(path))


def test_invalid_names_point_to_source(tmp_path: Path) -> None:
    path = _write(tmp_path, ",")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["columns"][2] = {"name": "hours-per-week", "type": "int", "bounds": [1, 99]}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ManifestError, match="source"):
        load_manifest(path)


def test_public_metadata_unchanged_without_the_new_fields() -> None:
    meta = load_catalog("examples/pums")["pums"].public_metadata()
    assert "separator" not in meta and all("source" not in c for c in meta["columns"])


def test_string_label_mapped_by_positive(tmp_path: Path) -> None:
    _write(tmp_path / "catalog", ";")
    features = ("age", "hours_per_week")
    loader = CatalogLoader(
        str(tmp_path / "catalog"), features, "income", str(tmp_path / "nodes"), positive=">50K"
    )
    data = loader("adult")
    labels = np.concatenate([data.y_train, data.y_test])
    assert sorted(labels.tolist()) == [0.0, 0.0, 0.0, 1.0, 1.0]
    unmapped = CatalogLoader(str(tmp_path / "catalog"), features, "income", str(tmp_path / "n2"))
    with pytest.raises(TrainingError, match="positive"):
        unmapped("adult")
    spec = JobSpec.with_defaults(
        800,
        3.0,
        model="logreg",
        features=features,
        label="income",
        nodes=("adult",),
        positive=">50K",
    )
    assert spec.positive == ">50K"
    assert encode_label([1, 2, None], "1").tolist() == [1.0, 0.0, 0.0]


def test_partition_one_table_by_a_column(tmp_path: Path) -> None:
    from federation.accounting import PrivacyCost
    from federation.inprocess import run_inprocess
    from sandbox.training import PartitionLoader, partition_nodes

    catalog = load_catalog("examples/pums")
    nodes = partition_nodes(catalog["pums"], "sex")
    assert nodes == ("0", "1")
    inner = CatalogLoader("examples/pums", ("age", "educ"), "married", str(tmp_path))
    loader = PartitionLoader(inner, "pums", "sex")
    sizes = {n: len(loader(n).y_train) + len(loader(n).y_test) for n in nodes}
    assert sizes == {"0": 486, "1": 514}  # the README's exact counts
    with pytest.raises(TrainingError, match="declared category"):
        loader("2")
    with pytest.raises(TrainingError, match="categories"):
        partition_nodes(catalog["pums"], "age")
    spec = JobSpec.with_defaults(
        380, 3.0, model="logreg", features=("age", "educ"), label="married", nodes=nodes, rounds=2
    )
    result = run_inprocess(spec, loader, budget=PrivacyCost(3.0, 1e-5))
    assert result.status == "completed" and result.model_card is not None
