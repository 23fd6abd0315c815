"""The governed query path: deny by default, budget before release, everything logged."""

from datetime import UTC, datetime, timedelta

import pytest

from policies.authority import Authority
from policies.grants import DatasetTerms, Grant
from sandbox.catalog import load_catalog
from sandbox.errors import UnsupportedQuery
from sandbox.service import Denied, QueryService, dataset_policy


@pytest.fixture()
def service(tmp_path, pums_catalog_dir):
    catalog = load_catalog(pums_catalog_dir)
    authority = Authority(tmp_path / "state")
    authority.register_dataset(dataset_policy(catalog["pums"], epsilon_cap=10.0, delta_cap=1e-5))
    now = datetime.now(UTC)
    authority.create_grant(
        Grant(
            grant_id="g1",
            firm="acme",
            datasets={
                "pums": DatasetTerms(
                    epsilon=2.0,
                    delta=0.0,
                    columns={
                        "*": "aggregate_only",
                        "sex": "group_by",
                        "age": "aggregate_only",
                        "income": "filter_only",
                    },
                )
            },
            purpose="labour-market research",
            legal_basis="个人信息保护法 art. 13(5)",
            actions={"query"},
            epsilon_per_use=1.0,
            min_group_size=5,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
            approved_by="official-1",
        )
    )
    return QueryService(catalog, authority)


def _entries(service, kind):
    return service.authority.log.search(kind=kind)


def test_permitted_query_is_charged_and_logged(service):
    out = service.query(
        "acme",
        "labour-market research",
        "SELECT sex, COUNT(*) AS n, AVG(age) AS a FROM pums WHERE income > 0 GROUP BY sex",
        0.5,
    )
    assert out.result.epsilon_spent == pytest.approx(0.5)
    remaining = service.authority.remaining("g1", "pums")
    assert remaining.epsilon == pytest.approx(1.5)
    releases = _entries(service, "release")
    assert len(releases) == 1
    assert out.release_index < out.tree_size
    assert len(out.inclusion_proof) > 0


@pytest.mark.parametrize(
    ("firm", "purpose", "sql", "eps", "code"),
    [
        ("other", "labour-market research", "SELECT COUNT(*) FROM pums", 0.1, "no-grant"),
        ("acme", "marketing", "SELECT COUNT(*) FROM pums", 0.1, "purpose-not-granted"),
        (
            "acme",
            "labour-market research",
            "SELECT SUM(income) FROM pums",
            0.1,
            "column-use-not-granted",
        ),
        (
            "acme",
            "labour-market research",
            "SELECT race, COUNT(*) FROM pums GROUP BY race",
            0.1,
            "column-use-not-granted",
        ),
        (
            "acme",
            "labour-market research",
            "SELECT COUNT(*) FROM pums",
            1.5,
            "epsilon-over-per-use-cap",
        ),
    ],
)
def test_denied_queries_spend_nothing_and_are_logged(service, firm, purpose, sql, eps, code):
    with pytest.raises(Denied) as info:
        service.query(firm, purpose, sql, eps)
    assert code in {r.code for r in info.value.decision.reasons}
    assert _entries(service, "release") == []
    assert _entries(service, "reservation") == []
    assert any(e for e in _entries(service, "decision"))
    assert service.engine.context("pums").odometer_loss()[0] == 0


def test_budget_is_never_overspent(service):
    sql = "SELECT COUNT(*) FROM pums"
    spent = 0.0
    with pytest.raises(Denied) as info:
        for _ in range(10):
            spent += service.query("acme", "labour-market research", sql, 0.7).result.epsilon_spent
    assert "budget-exhausted" in {r.code for r in info.value.decision.reasons}
    assert spent <= 2.0
    assert service.engine.context("pums").odometer_loss()[0] == pytest.approx(spent)


def test_bad_sql_never_reaches_the_policy_engine(service):
    before = len(_entries(service, "request"))
    with pytest.raises(UnsupportedQuery):
        service.query("acme", "labour-market research", "SELECT MAX(age) FROM pums", 0.1)
    assert len(_entries(service, "request")) == before


def test_small_groups_are_suppressed_by_the_grant(service):
    out = service.query(
        "acme", "labour-market research", "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", 1.0
    )
    assert all(row["n"]["value"] >= 5 for row in out.result.rows())


def test_a_failed_release_is_refunded_and_logged(service, monkeypatch):
    from sandbox.query import PreparedQuery

    def broken(self):
        raise RuntimeError("node lost power before releasing")

    monkeypatch.setattr(PreparedQuery, "release", broken)
    with pytest.raises(RuntimeError):
        service.query("acme", "labour-market research", "SELECT COUNT(*) FROM pums", 0.5)
    assert service.authority.remaining("g1", "pums").epsilon == pytest.approx(2.0)
    assert len(_entries(service, "reservation")) == 1
    assert len(_entries(service, "refund")) == 1
    assert _entries(service, "release") == []


def test_release_digest_in_the_log_matches_what_the_firm_received(service):
    import hashlib
    import json

    out = service.query("acme", "labour-market research", "SELECT COUNT(*) AS n FROM pums", 0.5)
    released = json.dumps(out.result.to_json(), sort_keys=True, ensure_ascii=False).encode()
    (entry,) = _entries(service, "release")
    assert entry["release_sha256"] == hashlib.sha256(released).hexdigest()
