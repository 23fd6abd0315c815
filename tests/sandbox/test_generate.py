"""Tests for the synthetic data generator: contract, determinism, bounds and realism."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from sandbox.generate import (
    CITIES,
    DATASETS,
    MAX_VISITS_PER_PERSON,
    GenerateError,
    enterprise_count,
    enterprise_frame,
    generate,
)

ROWS = 20_000
SEED = 11
POLARS_TYPES = {
    "int": pl.Int64,
    "float": pl.Float64,
    "string": pl.String,
    "bool": pl.Boolean,
    "date": pl.Date,
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog")
    generate(out, rows=ROWS, seed=SEED)
    return out


def _manifest(catalog: Path, name: str) -> dict:
    return yaml.safe_load((catalog / f"{name}.yaml").read_text(encoding="utf-8"))


def _frame(catalog: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(catalog / f"{name}.parquet")


def _digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in directory.iterdir()}


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(score)) + 1
    pos = int(label.sum())
    neg = label.size - pos
    return float((ranks[label == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _logistic_fit(x: np.ndarray, y: np.ndarray, steps: int = 25) -> np.ndarray:
    """Newton's method for logistic regression with an intercept."""
    x = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(x.shape[1])
        w += np.linalg.solve(hessian, x.T @ (y - p))
    return w


# ------------------------------------------------------------------------- the contract


def test_writes_every_dataset_of_every_city_and_reports_it(tmp_path: Path) -> None:
    messages: list[str] = []
    report = generate(tmp_path, rows=1_000, seed=1, progress=messages.append)
    expected = {f"{city}_{kind}" for city in CITIES for kind in DATASETS}
    assert set(report.datasets) == expected
    assert len(CITIES) >= 4 and {"jinan", "qingdao", "rizhao", "dezhou"} <= set(CITIES)
    assert CITIES["jinan"] == "济南" and CITIES["dezhou"] == "德州"
    for name in expected:
        assert (tmp_path / f"{name}.yaml").is_file()
        assert _frame(tmp_path, name).height == report.rows[name]
    assert report.total_rows == sum(report.rows.values())
    assert report.seconds > 0
    assert len(messages) == len(expected)
    assert sum(report.rows[f"{c}_population"] == 0 for c in CITIES) == 0
    assert sum(report.rows[f"{c}_population"] for c in CITIES) == 1_000
    assert not list(tmp_path.glob("*.tmp"))


def test_other_tables_scale_from_persons(catalog: Path) -> None:
    rows = {
        f.stem: pl.scan_parquet(f).select(pl.len()).collect().item()
        for f in catalog.glob("*.parquet")
    }
    persons = {c: rows[f"{c}_population"] for c in CITIES}
    assert sum(persons.values()) == ROWS
    assert persons["qingdao"] > persons["jinan"] > persons["dezhou"] > persons["rizhao"]
    for city, n in persons.items():
        enterprises = enterprise_count(n)
        assert rows[f"{city}_enterprise"] == enterprises
        assert rows[f"{city}_social_insurance"] == round(0.55 * n)
        assert rows[f"{city}_tax"] == round(0.5 * n) + enterprises
        assert 1.7 * n < rows[f"{city}_hospital_visits"] < 2.4 * n


def test_same_seed_gives_identical_files_and_another_seed_differs(
    catalog: Path, tmp_path: Path
) -> None:
    generate(tmp_path / "again", rows=ROWS, seed=SEED)
    generate(tmp_path / "other", rows=ROWS, seed=SEED + 1)
    first = _digests(catalog)
    assert _digests(tmp_path / "again") == first
    other = _digests(tmp_path / "other")
    changed = [name for name in first if name.endswith(".parquet") and other[name] != first[name]]
    assert len(changed) == len(CITIES) * len(DATASETS)


def test_enterprise_frame_matches_what_generate_writes(catalog: Path) -> None:
    for city in CITIES:
        written = _frame(catalog, f"{city}_enterprise")
        assert enterprise_frame(city, written.height, SEED).equals(written)


# --------------------------------------------------------------------------- manifests


def _check_manifest(path: Path, manifest: dict) -> None:
    """The rules of docs/catalog.md."""
    where = str(path)
    for key in ("name", "file", "classification", "columns"):
        assert key in manifest, f"{where}: missing {key}"
    assert re.fullmatch(r"[a-z0-9_]+", manifest["name"]), where
    assert manifest["name"] == path.stem
    assert manifest["classification"] in {"公开", "内部", "敏感", "核心"}
    assert (path.parent / manifest["file"]).is_file()
    assert manifest["file"].endswith(".parquet")
    names = [c["name"] for c in manifest["columns"]]
    assert len(names) == len(set(names)), f"{where}: duplicate columns"
    for column in manifest["columns"]:
        kind = column["type"]
        assert kind in POLARS_TYPES, f"{where}: {column['name']}"
        assert column.get("role", "attribute") in {"identifier", "attribute"}
        if "bounds" in column:
            lower, upper = column["bounds"]
            if kind == "date":
                lower, upper = dt.date.fromisoformat(lower), dt.date.fromisoformat(upper)
            else:
                assert kind in {"int", "float"}
                assert isinstance(lower, int | float) and isinstance(upper, int | float)
                if kind == "int":
                    assert isinstance(lower, int) and isinstance(upper, int)
            assert lower <= upper, f"{where}: {column['name']}"
        if "categories" in column:
            categories = column["categories"]
            assert categories and len(categories) == len(set(categories))
            assert kind == "string" and all(isinstance(v, str) for v in categories)
    unit = manifest.get("privacy_unit") or {}
    if unit.get("id_column") is not None:
        assert unit["id_column"] in names
    assert unit.get("max_rows", 1) >= 1


def test_every_manifest_follows_the_catalog_rules(catalog: Path) -> None:
    manifests = sorted(catalog.glob("*.yaml"))
    assert len(manifests) == len(CITIES) * len(DATASETS)
    for path in manifests:
        _check_manifest(path, yaml.safe_load(path.read_text(encoding="utf-8")))
    for city in CITIES:
        assert _manifest(catalog, f"{city}_hospital_visits")["privacy_unit"] == {
            "id_column": "person_id",
            "max_rows": MAX_VISITS_PER_PERSON,
        }
        assert _manifest(catalog, f"{city}_tax")["privacy_unit"] == {
            "id_column": "taxpayer_id",
            "max_rows": 1,
        }


def test_the_project_catalog_loader_accepts_the_output(catalog: Path) -> None:
    from sandbox.catalog import load_catalog, load_frame

    loaded = load_catalog(catalog)
    assert len(loaded) == len(CITIES) * len(DATASETS)
    for city in CITIES:
        assert f"{city}_hospital_visits" in loaded
    # The node's loader drops nothing: the generated data keep max_rows.
    kept = load_frame(loaded["dezhou_hospital_visits"])
    assert kept.height == _frame(catalog, "dezhou_hospital_visits").height
    assert "person_id" not in kept.columns


# ------------------------------------------------------------------------------ values


def test_values_match_declared_types_bounds_categories_and_privacy_units(catalog: Path) -> None:
    for path in sorted(catalog.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
        frame = _frame(catalog, manifest["name"])
        assert frame.columns == [c["name"] for c in manifest["columns"]]
        for column in manifest["columns"]:
            series = frame[column["name"]]
            where = f"{manifest['name']}.{column['name']}"
            assert series.dtype == POLARS_TYPES[column["type"]], where
            assert series.null_count() == 0, where
            if "bounds" in column:
                lower, upper = column["bounds"]
                if column["type"] == "date":
                    lower, upper = dt.date.fromisoformat(lower), dt.date.fromisoformat(upper)
                assert series.min() >= lower and series.max() <= upper, where
            if "categories" in column:
                assert set(series.unique()) <= set(column["categories"]), where
        unit = manifest["privacy_unit"]
        per_unit = frame.group_by(unit["id_column"]).len()["len"].max()
        assert per_unit <= unit["max_rows"], manifest["name"]


def test_hospital_visits_use_the_declared_cap(catalog: Path) -> None:
    most = max(
        _frame(catalog, f"{city}_hospital_visits").group_by("person_id").len()["len"].max()
        for city in CITIES
    )
    assert 10 <= most <= MAX_VISITS_PER_PERSON


def test_departments_of_a_city_share_pseudonymous_ids(catalog: Path) -> None:
    for city in CITIES:
        persons = set(_frame(catalog, f"{city}_population")["person_id"])
        assert all(re.fullmatch(r"\d{6}-\d{9}", p) for p in list(persons)[:100])
        enterprises = set(_frame(catalog, f"{city}_enterprise")["enterprise_id"])
        insured = _frame(catalog, f"{city}_social_insurance")
        assert set(insured["person_id"]) <= persons
        assert set(insured["employer_id"]) <= enterprises
        assert set(_frame(catalog, f"{city}_hospital_visits")["person_id"]) <= persons
        tax = _frame(catalog, f"{city}_tax")
        assert set(tax.filter(pl.col("taxpayer_type") == "个人")["taxpayer_id"]) <= persons
        assert set(tax.filter(pl.col("taxpayer_type") == "企业")["taxpayer_id"]) == enterprises
    jinan = _frame(catalog, "jinan_population")["person_id"][0]
    assert jinan.startswith("370100-")


# ----------------------------------------------------------------------------- realism


def test_education_raises_contribution_base_and_income(catalog: Path) -> None:
    order = {e: i for i, e in enumerate(["小学及以下", "初中", "高中", "大专", "本科", "研究生"])}
    population = _frame(catalog, "jinan_population").with_columns(
        level=pl.col("education").replace_strict(order, return_dtype=pl.Int64)
    )
    insured = _frame(catalog, "jinan_social_insurance").join(population, on="person_id")
    rho = insured.select(pl.corr("level", "monthly_contribution_base", method="spearman")).item()
    assert rho > 0.25
    means = insured.group_by("level").agg(pl.col("monthly_contribution_base").mean()).sort("level")
    assert means["monthly_contribution_base"][-1] > 1.5 * means["monthly_contribution_base"][0]
    tax = _frame(catalog, "jinan_tax").join(population, left_on="taxpayer_id", right_on="person_id")
    assert tax.select(pl.corr("level", "income_or_revenue", method="spearman")).item() > 0.25


def test_older_people_visit_hospitals_more_and_cost_more(catalog: Path) -> None:
    population = _frame(catalog, "qingdao_population").with_columns(
        old=(2024 - pl.col("birth_year")) >= 65
    )
    visits = _frame(catalog, "qingdao_hospital_visits").join(population, on="person_id")
    per_person = visits.group_by("old").len().join(population.group_by("old").len(), on="old")
    rate = dict(zip(per_person["old"], per_person["len"] / per_person["len_right"], strict=True))
    assert rate[True] > 1.8 * rate[False]
    cost = dict(visits.group_by("old").agg(pl.col("cost").mean()).iter_rows())
    assert cost[True] > 1.5 * cost[False]


def test_cities_are_not_identically_distributed(catalog: Path) -> None:
    ages = {
        city: 2024 - _frame(catalog, f"{city}_population")["birth_year"].to_numpy()
        for city in ("qingdao", "dezhou")
    }
    diff = ages["dezhou"].mean() - ages["qingdao"].mean()
    se = np.sqrt(sum(a.var() / a.size for a in ages.values()))
    assert diff / se > 5, "德州 should be older than 青岛"
    urban = {
        city: (_frame(catalog, f"{city}_population")["household_type"] == "城镇").mean()
        for city in CITIES
    }
    assert urban["qingdao"] - urban["dezhou"] > 0.15
    firms = {city: enterprise_frame(city, 5_000, seed=0) for city in ("qingdao", "dezhou")}
    rate = {city: frame["default"].mean() for city, frame in firms.items()}
    pooled = (rate["qingdao"] + rate["dezhou"]) / 2
    z = (rate["dezhou"] - rate["qingdao"]) / np.sqrt(2 * pooled * (1 - pooled) / 5_000)
    assert z > 5, f"default rates should differ: {rate}"
    share = {
        city: {
            industry: (frame["industry"] == industry).mean()
            for industry in ("农林牧渔业", "制造业")
        }
        for city, frame in firms.items()
    }
    assert share["dezhou"]["农林牧渔业"] > 3 * share["qingdao"]["农林牧渔业"]


def test_default_is_learnable_but_not_trivial() -> None:
    firms = enterprise_frame("jinan", 8_000, seed=5)
    label = firms["default"].to_numpy()
    features = np.column_stack(
        [
            firms["tax_arrears_months"].to_numpy(),
            firms["years_operating"].to_numpy(),
            (firms["insured_employees"] / firms["employees"]).to_numpy(),
            np.log1p((firms["annual_revenue"] / firms["employees"]).to_numpy()),
        ]
    ).astype(float)
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    train, test = slice(0, 5_000), slice(5_000, None)
    w = _logistic_fit(features[train], label[train])
    score = np.column_stack([np.ones(3_000), features[test]]) @ w
    auc = _auc(score, label[test])
    assert 0.65 < auc < 0.95, auc
    assert w[1] > 0 and w[3] < 0, "arrears raise risk, insurance coverage lowers it"


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("rows", [0, -5, 10, 2.5, True])
def test_bad_row_counts_are_refused(rows: object, tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="rows must be"):
        generate(tmp_path, rows=rows)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_unwritable_out_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(GenerateError, match="cannot write to .*writable directory"):
        generate(blocker / "catalog", rows=1_000)
    assert issubclass(GenerateError, ValueError)


def test_bad_enterprise_frame_arguments_are_refused() -> None:
    with pytest.raises(GenerateError, match="unknown city 'beijing'"):
        enterprise_frame("beijing", 10, seed=0)
    with pytest.raises(GenerateError, match="positive"):
        enterprise_frame("jinan", 0, seed=0)
    with pytest.raises(GenerateError, match="seed"):
        enterprise_frame("jinan", 10, seed=-1)
