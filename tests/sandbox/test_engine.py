"""The DP query engine on PUMS: accuracy, interval coverage, exact cost, refusals."""

import math

import polars as pl
import pytest

from sandbox.catalog import load_catalog, load_frame
from sandbox.errors import MissingBounds, PrivacyParameterError, UnknownColumn, UnsupportedQuery
from sandbox.query import QueryEngine

# Exact values from the PUMS README (computed from the file itself).
EXACT = {
    "rows": 1000,
    "sex": {0: 486, 1: 514},
    "married": {0: 451, 1: 549},
    "mean_age": 44.797,
    "mean_income": 34380.084,
    "mean_age_by_sex": {1: 45.747, 0: 43.792},
    "race": {1: 550, 2: 71, 3: 265, 4: 108, 5: 1, 6: 5},
    "educ9": 201,
}


@pytest.fixture(scope="module")
def engine(pums_catalog_dir):
    return QueryEngine(load_catalog(pums_catalog_dir))


def _cell(result, row, name):
    return result.rows()[row][name]


def test_large_epsilon_converges_to_exact_values(engine):
    r = engine.run(
        "SELECT COUNT(*) AS n, SUM(income) AS s, AVG(age) AS a, AVG(income) AS ai FROM pums",
        epsilon=1e7,
    )
    row = r.rows()[0]
    assert row["n"]["value"] == EXACT["rows"]
    assert row["s"]["value"] == pytest.approx(EXACT["mean_income"] * 1000, abs=2)
    assert row["a"]["value"] == pytest.approx(EXACT["mean_age"], abs=1e-3)
    assert row["ai"]["value"] == pytest.approx(EXACT["mean_income"], abs=1e-2)

    by_sex = engine.run("SELECT sex, COUNT(*) AS n, AVG(age) AS a FROM pums GROUP BY sex", 1e7)
    got = {row["sex"]: row for row in by_sex.rows()}
    for sex in (0, 1):
        assert got[sex]["n"]["value"] == EXACT["sex"][sex]
        assert got[sex]["a"]["value"] == pytest.approx(EXACT["mean_age_by_sex"][sex], abs=1e-3)

    race = engine.run("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", 1e7)
    assert {row["race"]: row["n"]["value"] for row in race.rows()} == EXACT["race"]

    educ9 = engine.run("SELECT COUNT(*) AS n FROM pums WHERE educ = 9", 1e7)
    assert _cell(educ9, 0, "n")["value"] == EXACT["educ9"]
    married = engine.run("SELECT married, COUNT(*) AS n FROM pums GROUP BY married", 1e7)
    assert {row["married"]: row["n"]["value"] for row in married.rows()} == EXACT["married"]


def test_filters_match_plain_polars_at_large_epsilon(engine, pums_catalog_dir):
    frame = load_frame(load_catalog(pums_catalog_dir)["pums"])
    sql = (
        "SELECT COUNT(*) AS n FROM pums WHERE (age BETWEEN 30 AND 50 OR race IN (2, 4)) "
        "AND NOT sex = 1 AND income > 10000"
    )
    expected = frame.filter(
        ((pl.col("age").is_between(30, 50)) | pl.col("race").is_in([2, 4]))
        & ~(pl.col("sex") == 1)
        & (pl.col("income") > 10000)
    ).height
    assert engine.run(sql, 1e7).rows()[0]["n"]["value"] == expected


def test_median_converges(engine, pums_catalog_dir):
    frame = load_frame(load_catalog(pums_catalog_dir)["pums"])
    r = engine.run("SELECT MEDIAN(age) AS m, QUANTILE(age, 0.9) AS q FROM pums", 1e4)
    row = r.rows()[0]
    assert abs(row["m"]["value"] - frame["age"].median()) <= 1
    assert abs(row["q"]["value"] - frame["age"].quantile(0.9)) <= 1
    assert r.aggregates["m"].mechanisms[0]["mechanism"] == "ExponentialMin"


def test_intervals_cover_exact_values_at_epsilon_one(engine):
    """2,000 releases at epsilon = 1: each 95% interval holds the exact value 91-98% of the time."""
    sql = "SELECT COUNT(*) AS n, SUM(income) AS s, AVG(age) AS a FROM pums"
    exact = {"n": 1000, "s": 34380084, "a": 44.797}
    hits = {k: 0 for k in exact}
    draws = 2000
    prepared = engine.prepare(sql, epsilon=1.0)
    assert prepared.epsilon == pytest.approx(1.0, rel=1e-9)
    for _ in range(draws):
        row = engine.run(sql, epsilon=1.0).rows()[0]
        for key, value in exact.items():
            low, high = row[key]["ci95"]
            hits[key] += low <= value <= high
    for key in exact:
        rate = hits[key] / draws
        assert 0.91 <= rate <= 0.98, (key, rate)


def test_epsilon_split_over_aggregates_reports_the_total(engine):
    for k, sql in enumerate(
        [
            "SELECT COUNT(*) FROM pums",
            "SELECT COUNT(*), SUM(income) FROM pums",
            "SELECT sex, COUNT(*), SUM(income), AVG(age), MEDIAN(income) FROM pums GROUP BY sex",
        ],
        start=1,
    ):
        for eps in (0.1, 1.0, 3.7):
            r = engine.run(sql, epsilon=eps)
            assert r.epsilon_spent <= eps
            assert r.epsilon_spent == pytest.approx(eps, rel=1e-9)
            assert r.delta_spent == 0.0
            shares = [a.epsilon for a in r.aggregates.values()]
            assert len(shares) == [1, 2, 4][k - 1]
            assert sum(shares) == pytest.approx(eps, rel=1e-9)
            assert all(s == pytest.approx(eps / len(shares), rel=1e-9) for s in shares)


def test_released_cost_matches_opendp_odometer(pums_catalog_dir):
    engine = QueryEngine(load_catalog(pums_catalog_dir))
    engine.run("SELECT COUNT(*), AVG(age) FROM pums", epsilon=0.5)
    engine.run("SELECT sex, SUM(income) FROM pums GROUP BY sex", epsilon=0.25)
    eps, delta = engine.context("pums").odometer_loss()
    assert eps == pytest.approx(0.75, rel=1e-9)
    assert delta == 0.0


@pytest.mark.parametrize(
    ("sql", "epsilon", "delta", "error"),
    [
        ("SELECT COUNT(*) FROM pums", 0.0, 0.0, PrivacyParameterError),
        ("SELECT COUNT(*) FROM pums", -1.0, 0.0, PrivacyParameterError),
        ("SELECT COUNT(*) FROM pums", math.nan, 0.0, PrivacyParameterError),
        ("SELECT COUNT(*) FROM pums", math.inf, 0.0, PrivacyParameterError),
        ("SELECT COUNT(*) FROM pums", 1.0, math.nan, PrivacyParameterError),
        ("SELECT COUNT(*) FROM pums", 1.0, 1.0, PrivacyParameterError),
        ("SELECT * FROM pums", 1.0, 0.0, UnsupportedQuery),
        ("SELECT age FROM pums", 1.0, 0.0, UnsupportedQuery),
        ("SELECT COUNT(*) FROM pums p JOIN pums q ON p.age = q.age", 1.0, 0.0, UnsupportedQuery),
        ("SELECT MAX(age) FROM pums", 1.0, 0.0, UnsupportedQuery),
        ("DELETE FROM pums", 1.0, 0.0, UnsupportedQuery),
        ("SELECT COUNT(*) FROM (SELECT * FROM pums)", 1.0, 0.0, UnsupportedQuery),
        ("SELECT SUM(salary) FROM pums", 1.0, 0.0, UnknownColumn),
        ("SELECT COUNT(*) FROM pums WHERE zip = 1", 1.0, 0.0, UnknownColumn),
        ("SELECT COUNT(*) FROM nowhere", 1.0, 0.0, Exception),
        ("SELECT COUNT(*) FROM pums WHERE age = 'old'", 1.0, 0.0, UnsupportedQuery),
        ("SELECT COUNT(*) FROM pums; SELECT COUNT(*) FROM pums", 1.0, 0.0, UnsupportedQuery),
        ("SELECT COUNT(*) FROM pums GROUP BY", 1.0, 0.0, UnsupportedQuery),
    ],
)
def test_refused_queries_spend_nothing(pums_catalog_dir, sql, epsilon, delta, error):
    engine = QueryEngine(load_catalog(pums_catalog_dir))
    engine.run("SELECT COUNT(*) FROM pums", epsilon=0.5)  # context exists, known spend
    before = engine.context("pums").odometer_loss()
    with pytest.raises(error) as info:
        engine.run(sql, epsilon=epsilon, delta=delta)
    assert str(info.value)  # the error names the problem
    assert engine.context("pums").odometer_loss() == before


def test_missing_bounds_is_refused(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.csv\nclassification: 内部\ncolumns:\n"
        "  - {name: x, type: int}\n  - {name: y, type: float, bounds: [0, 10]}\n"
    )
    engine = QueryEngine(load_catalog(tmp_path))
    with pytest.raises(MissingBounds, match="SUM\\(x\\) needs public bounds"):
        engine.run("SELECT SUM(x) FROM d", epsilon=1.0)
    with pytest.raises(MissingBounds):
        engine.run("SELECT MEDIAN(x) FROM d", epsilon=1.0)
    assert engine.run("SELECT SUM(y) FROM d", 1e6).rows()[0]["sum_y"]["value"] == pytest.approx(
        6, abs=1e-3
    )


def test_non_public_keys_need_delta_and_use_partition_selection(tmp_path):
    n = 3000
    frame = pl.DataFrame({"code": [f"k{i % 3}" for i in range(n)] + ["rare"], "v": [1.0] * (n + 1)})
    frame.write_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.yaml").write_text(
        "name: d\nfile: d.parquet\nclassification: 内部\nrow_bound: 10000\ncolumns:\n"
        "  - {name: code, type: string}\n  - {name: v, type: float, bounds: [0, 1]}\n"
    )
    engine = QueryEngine(load_catalog(tmp_path))
    with pytest.raises(PrivacyParameterError, match="delta"):
        engine.run("SELECT code, SUM(v) FROM d GROUP BY code", epsilon=1.0)
    r = engine.run("SELECT code, SUM(v) FROM d GROUP BY code", epsilon=1.0, delta=1e-6)
    keys = {row["code"] for row in r.rows()}
    assert keys == {"k0", "k1", "k2"}  # the single-row group is never released
    assert r.delta_spent <= 1e-6 and r.delta_spent > 0
    assert r.epsilon_spent == pytest.approx(1.0, rel=1e-9)
    assert r.selection_threshold is not None and r.selection_threshold > 1
    assert r.extra_mechanisms  # the hidden count used for selection is reported


def test_min_group_size_suppresses_small_groups(engine):
    r = engine.run("SELECT race, COUNT(*) AS n FROM pums GROUP BY race", 1e6, min_group_size=10)
    assert {row["race"] for row in r.rows()} == {1, 2, 3, 4}  # races 5 and 6 have 1 and 5 rows
    assert r.suppressed_groups == 2


def test_order_by_and_limit_apply_to_released_rows(engine):
    r = engine.run(
        "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ ORDER BY n DESC LIMIT 2", 1e6
    )
    rows = r.rows()
    assert [row["educ"] for row in rows] == [9, 13]


def test_result_json_shape(engine):
    r = engine.run("SELECT sex, AVG(income) AS m FROM pums GROUP BY sex", epsilon=1.0)
    doc = r.to_json()
    assert doc["epsilon_spent"] == pytest.approx(1.0)
    assert len(doc["rows"]) == 2
    cell = doc["rows"][0]["m"]
    assert cell["ci95"][0] <= cell["value"] <= cell["ci95"][1]
    mech = doc["aggregates"][0]["mechanisms"]
    assert [m["statistic"] for m in mech] == ["sum", "count"]
    assert all(m["mechanism"] == "Integer Laplace" and m["scale"] > 0 for m in mech)
    assert len(r.digest()) == 64


def test_dates_filter_and_group_as_public_keys(tmp_path):
    import datetime as dt

    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i % 10) for i in range(1000)]
    pl.DataFrame({"day": days, "cost": [10.0] * 1000}).write_parquet(tmp_path / "v.parquet")
    (tmp_path / "v.yaml").write_text(
        "name: v\nfile: v.parquet\nclassification: 内部\ncolumns:\n"
        "  - {name: day, type: date, bounds: ['2024-01-01', '2024-01-31']}\n"
        "  - {name: cost, type: float, bounds: [0, 100]}\n"
    )
    engine = QueryEngine(load_catalog(tmp_path))
    r = engine.run(
        "SELECT day, COUNT(*) AS n FROM v WHERE day BETWEEN DATE '2024-01-03' AND '2024-01-04' "
        "GROUP BY day",
        1e7,
    )
    counts = {row["day"]: row["n"]["value"] for row in r.rows()}
    assert len(counts) == 31  # every public key appears
    assert counts["2024-01-03"] == 100 and counts["2024-01-04"] == 100
    assert counts["2024-01-05"] == 0 and counts["2024-01-02"] == 0
    before = engine.run("SELECT COUNT(*) AS n FROM v WHERE day < '2024-01-06'", 1e7)
    assert before.rows()[0]["n"]["value"] == 500


def test_opendp_refusals_become_query_errors_and_spend_nothing(pums_catalog_dir, monkeypatch):
    import opendp.prelude as dp

    from sandbox.query import DatasetContext

    engine = QueryEngine(load_catalog(pums_catalog_dir))
    engine.run("SELECT COUNT(*) FROM pums", epsilon=0.5)
    before = engine.context("pums").odometer_loss()

    def refuse(self, plan, threshold=None):
        raise dp.OpenDPException("MakeTransformation", "this expression is not supported")

    monkeypatch.setattr(DatasetContext, "measurement", refuse)
    with pytest.raises(UnsupportedQuery, match="OpenDP cannot.*not supported"):
        engine.run("SELECT SUM(age) FROM pums", 1.0)
    assert engine.context("pums").odometer_loss() == before
    with pytest.raises(UnsupportedQuery, match="finite"):
        engine.run("SELECT COUNT(*) FROM pums WHERE age > 1e400", 1.0)


def test_float_columns_are_summed_in_fixed_point(tmp_path):
    values = [0.125 * (i % 8) for i in range(4000)]
    pl.DataFrame({"k": [f"g{i % 4}" for i in range(4000)], "v": values}).write_parquet(
        tmp_path / "f.parquet"
    )
    (tmp_path / "f.yaml").write_text(
        "name: f\nfile: f.parquet\nclassification: 内部\nrow_bound: 100000\ncolumns:\n"
        "  - {name: k, type: string}\n  - {name: v, type: float, bounds: [0, 1]}\n"
    )
    engine = QueryEngine(load_catalog(tmp_path))
    exact = engine.run("SELECT SUM(v) AS s, AVG(v) AS a FROM f WHERE v >= 0.5", 1e7).rows()[0]
    assert exact["s"]["value"] == pytest.approx(sum(v for v in values if v >= 0.5), abs=1e-3)
    assert exact["a"]["value"] == pytest.approx(0.6875, abs=1e-6)
    # With private keys the sum's noise scale is the exact sensitivity over epsilon: bounds
    # [0, 1] and a 1/2 share of epsilon = 1 give scale 2, not a rounding-error padded one.
    r = engine.run("SELECT k, COUNT(*), SUM(v) AS s FROM f GROUP BY k", 1.0, delta=1e-6)
    assert r.aggregates["s"].mechanisms[0]["scale"] == pytest.approx(2.0, rel=1e-9)
    assert {row["k"] for row in r.rows()} == {"g0", "g1", "g2", "g3"}
