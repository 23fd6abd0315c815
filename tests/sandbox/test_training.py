"""Governed federated training: a grant decides, the ledger reserves the predicted cost first.

The jobs run in this process (:func:`federation.inprocess.run_inprocess` stands in for the Ray
simulation, with the same apps and checks).
"""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import policies.authority as authority_module
import sandbox.training as training
from federation.accounting import plan_job, predict_cost
from federation.inprocess import run_inprocess
from federation.job import JobSpec
from federation.node_store import NodeStore, node_state_dir
from policies.authority import Authority
from policies.grants import DatasetTerms, Grant
from sandbox.catalog import load_catalog
from sandbox.generate import generate
from sandbox.service import Denied, QueryService, dataset_policy
from sandbox.training import CatalogLoader, TrainingService, categorical_sizes, encode_column

NODES = ("jinan_enterprise", "qingdao_enterprise")
FEATURES = ("industry", "years_operating", "tax_arrears_months", "employees")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    generate(root, rows=6000, seed=3)
    return load_catalog(root)


def _setup(tmp_path, catalog, models, epsilon=5.0):
    authority = Authority(tmp_path / "state")
    for name in NODES:
        authority.register_dataset(dataset_policy(catalog[name], epsilon_cap=10.0, delta_cap=1e-3))
    now = datetime.now(UTC)
    columns = {c: "aggregate_only" for c in (*FEATURES, "default")}
    authority.create_grant(
        Grant(
            grant_id="T1",
            firm="bank",
            purpose="credit risk",
            legal_basis="contract",
            datasets={n: DatasetTerms(epsilon=epsilon, delta=1e-4, columns=columns) for n in NODES},
            actions={"train"},
            epsilon_per_use=epsilon,
            min_group_size=1,
            models=models,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=1),
            approved_by="official",
        )
    )
    return authority


def _spec(catalog, **overrides):
    params = dict(
        model="logreg",
        features=FEATURES,
        label="default",
        nodes=NODES,
        rounds=1,
        sample_rate=0.1,
        learning_rate=0.5,
        target_epsilon=2.0,
        target_delta=1e-9,  # below 1/row_bound of the generated manifests
        categorical=categorical_sizes(catalog, NODES[0], FEATURES),
        min_nodes=2,
        seed=1,
    )
    params.update(overrides)
    return JobSpec(**params)


def test_loader_encodes_with_public_metadata_only(catalog, tmp_path):
    data = CatalogLoader(str(catalog.root), FEATURES, "default", str(tmp_path))("jinan_enterprise")
    assert data.X_train.shape[1] == len(FEATURES)
    assert np.isfinite(data.X_train).all()
    numeric = data.X_train[:, 1:]
    assert numeric.min() >= 0.0 and numeric.max() <= 1.0
    assert set(np.unique(data.X_train[:, 0])) <= set(range(10))
    spec = catalog["jinan_enterprise"].column("employees")
    assert encode_column(spec, np.array([1, 20000]))[1] == pytest.approx(1.0)


def test_unapproved_model_is_denied_and_reserves_nothing(tmp_path, catalog):
    authority = _setup(tmp_path, catalog, models={"mlp"})
    with pytest.raises(Denied) as info:
        TrainingService(catalog, authority).train("bank", "credit risk", _spec(catalog))
    assert "model-not-approved" in {r.code for r in info.value.decision.reasons}
    assert authority.log.search(kind="reservation") == []
    assert authority.remaining("T1", NODES[0]).epsilon == pytest.approx(5.0)


def test_job_over_the_grant_budget_is_denied_before_training(tmp_path, catalog):
    authority = _setup(tmp_path, catalog, models={"logreg"}, epsilon=1.0)
    with pytest.raises(Denied):
        TrainingService(catalog, authority).train("bank", "credit risk", _spec(catalog))
    assert authority.log.search(kind="release") == []


@pytest.fixture
def in_process(monkeypatch):
    monkeypatch.setattr(training, "run_simulation", run_inprocess)


def test_permitted_job_is_charged_its_predicted_cost_and_logged(tmp_path, catalog, in_process):
    authority = _setup(tmp_path, catalog, models={"logreg"})
    spec = _spec(catalog)
    predicted = predict_cost(spec)
    service = TrainingService(catalog, authority)
    model = service.train("bank", "credit risk", spec)
    assert model.result.status == "completed"
    plan = plan_job(spec)
    for node in NODES:
        # Each node counted its steps in its own durable store, under the grant.
        usage = NodeStore(node_state_dir(service.node_state, node)).usage("T1", node)
        assert usage.steps == plan.total_steps(node) and usage.evaluations == 1
    decisions = authority.log.search(kind="decision")
    assert {d.get("plan_digest") for d in decisions} == {spec.config_hash()}
    for node in NODES:
        assert model.result.spent[node].epsilon <= predicted[node].epsilon + 1e-12
        remaining = authority.remaining("T1", node)
        assert remaining.epsilon == pytest.approx(5.0 - predicted[node].epsilon)
    releases = authority.log.search(kind="release")
    assert len(releases) == len(NODES)
    assert all(len(r["release_sha256"]) == 64 for r in releases)
    assert len(model.model_sha256) == 64
    card = model.model_card()
    assert card["config_hash"] == spec.config_hash()
    assert {n["dataset"] for n in card["nodes"]} == set(NODES)


def test_queries_and_training_take_the_one_governed_use_path(
    tmp_path, catalog, pums_catalog_dir, in_process, monkeypatch
):
    """Both paths call Authority.use once per use, and every budget change they make is
    written by it: the same sequence of log entries comes out of it for a query and a job."""
    authority = _setup(tmp_path, catalog, models={"logreg"})
    pums = load_catalog(pums_catalog_dir)
    authority.register_dataset(dataset_policy(pums["pums"], epsilon_cap=10.0, delta_cap=1e-5))
    now = datetime.now(UTC)
    authority.create_grant(
        Grant(
            grant_id="Q1",
            firm="bank",
            purpose="credit risk",
            legal_basis="contract",
            datasets={
                "pums": DatasetTerms(epsilon=2.0, delta=0.0, columns={"*": "aggregate_only"})
            },
            actions={"query"},
            epsilon_per_use=1.0,
            min_group_size=5,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=1),
            approved_by="official",
        )
    )
    real_use = authority_module.governed_use
    calls: list[tuple[int, list[str]]] = []

    def spy(authority, decisions, run, **kwargs):
        start = authority.log.size
        settled = real_use(authority, decisions, run, **kwargs)
        kinds = [json.loads(e)["kind"] for e in authority.log.entries(start)]
        calls.append((len(decisions), kinds))
        return settled

    monkeypatch.setattr(authority_module, "governed_use", spy)
    queries = QueryService(pums, authority)
    out = queries.query("bank", "credit risk", "SELECT COUNT(*) FROM pums", 0.5)
    spec = _spec(catalog, nodes=NODES[:1], min_nodes=1)
    model = TrainingService(catalog, authority).train("bank", "credit risk", spec)
    assert model.result.status == "completed"
    assert calls == [(1, ["reservation", "release"]), (1, ["reservation", "release"])]
    # Outside the use path the governed calls only log requests and decisions.
    kinds = [json.loads(e)["kind"] for e in authority.log.entries()]
    assert kinds.count("reservation") == kinds.count("release") == 2
    # The query reserved exactly the loss OpenDP calibrated, the job its predicted cost.
    reservations = authority.log.search(kind="reservation")
    assert reservations[0]["epsilon"] == pytest.approx(out.result.epsilon_spent, abs=1e-6)
    assert reservations[1]["epsilon"] == pytest.approx(
        predict_cost(spec)[NODES[0]].epsilon, abs=1e-6
    )
