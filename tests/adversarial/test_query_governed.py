"""Through the governed path: a query that cannot be released is refused before any charge."""

from datetime import UTC, datetime, timedelta

import pytest

from policies.authority import Authority
from policies.grants import DatasetTerms, Grant
from sandbox.catalog import load_catalog
from sandbox.errors import UnsupportedQuery
from sandbox.service import QueryService, dataset_policy


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
                    epsilon=2.0, delta=1e-7, columns={"*": "aggregate_only", "age": "filter_only"}
                )
            },
            purpose="research",
            legal_basis="个人信息保护法 art. 13(5)",
            actions={"query"},
            epsilon_per_use=1.0,
            min_group_size=1,
            valid_from=now - timedelta(days=1),
            valid_until=now + timedelta(days=30),
            approved_by="official-1",
        )
    )
    return QueryService(catalog, authority)


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT COUNT(*) AS "\ud800" FROM pums',
        "SELECT COUNT(*) FROM pums WHERE " + "(" * 500 + "age = 1" + ")" * 500,
        "SELECT COUNT(*) FROM pums LIMIT " + "9" * 5000,
    ],
    ids=["surrogate-alias", "deep-parens", "huge-limit"],
)
def test_refused_before_any_charge(service, sql):
    with pytest.raises(UnsupportedQuery):
        service.query("acme", "research", sql, 0.5)
    assert service.authority.remaining("g1", "pums").epsilon == pytest.approx(2.0)
    assert service.engine.context("pums").odometer_loss() == (0.0, 0.0)


def test_a_delta_the_dataset_refuses_is_refused_before_the_decision(service):
    """delta=0.5 would let singleton keys through partition selection: refused on public
    metadata before the policy engine is asked, so no decision is logged and nothing spent."""
    from sandbox.errors import PrivacyParameterError

    decisions_before = len(service.authority.log.search(kind="decision"))
    with pytest.raises(PrivacyParameterError):
        service.query("acme", "research", "SELECT COUNT(*) AS n FROM pums", 0.5, delta=0.5)
    assert len(service.authority.log.search(kind="decision")) == decisions_before
    assert service.authority.remaining("g1", "pums").epsilon == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grant_id": "\ud800"},
        {"firm_text": "acme\ud800"},
        {"purpose_text": "research\x00"},
        {"epsilon": 1e308},
        {"min_group_size": 10**30},
    ],
    ids=["surrogate-grant-id", "surrogate-firm", "nul-purpose", "epsilon-1e308", "huge-group"],
)
def test_hostile_request_fields_are_our_error_and_cost_nothing(service, kwargs):
    """Text that cannot be stored or logged, and amounts that overflow the ledger's or Cedar's
    64-bit integers, are refused with the project's errors before any decision is logged."""
    from policies.errors import PolicyError
    from sandbox.errors import SandboxError

    firm = kwargs.pop("firm_text", "acme")
    purpose = kwargs.pop("purpose_text", "research")
    epsilon = kwargs.pop("epsilon", 0.5)
    decisions_before = len(service.authority.log.search(kind="decision"))
    with pytest.raises((PolicyError, SandboxError)):
        service.query(firm, purpose, "SELECT COUNT(*) AS n FROM pums", epsilon, **kwargs)
    assert len(service.authority.log.search(kind="decision")) == decisions_before
    assert service.authority.remaining("g1", "pums").epsilon == pytest.approx(2.0)


def test_revoking_a_hostile_grant_id_is_our_error(service):
    from policies.errors import PolicyError

    with pytest.raises(PolicyError):
        service.authority.revoke_grant("\ud800", "official-1", "hostile id")
    assert service.authority.registry.grant("g1").revoked is False
