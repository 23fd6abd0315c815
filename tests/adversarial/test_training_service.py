"""Governed training against hostile jobs and careless data: the split, the privacy unit, the
delta bound and what a failed job is charged. No Ray: the simulation is replaced where a test
needs the nodes to run, and the nodes' handlers run in process."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

import sandbox.training as training
from federation.client_app import handle_train
from federation.errors import BudgetExceededError, InvalidJobError, NodeApprovalError
from federation.job import JobSpec
from federation.zoo import build_model
from policies.authority import Authority
from policies.grants import DatasetTerms, Grant
from sandbox.catalog import load_catalog
from sandbox.errors import PrivacyParameterError, TrainingError
from sandbox.service import dataset_policy
from sandbox.training import CatalogLoader, TrainingService

FEATURES = ("age", "income")
PEOPLE_ROWS = 300
PERSONS = 100


def _write_people(root: Path, skip: int | None = None) -> None:
    rows = [
        {"age": 18 + i % 70, "income": 1000.0 + 37.0 * i, "default": i % 2}
        for i in range(PEOPLE_ROWS)
        if i != skip
    ]
    _csv(root / "people.csv", rows)
    (root / "people.yaml").write_text(
        "name: people\nfile: people.csv\nclassification: 内部\nrow_bound: 1000\ncolumns:\n"
        "  - {name: age, type: int, bounds: [18, 90]}\n"
        "  - {name: income, type: float, bounds: [0, 100000]}\n"
        "  - {name: default, type: int, categories: [0, 1]}\n",
        encoding="utf-8",
    )


def _write_visits(root: Path, skip_person: int | None = None) -> None:
    rows = [
        {
            "person_id": f"p{p:03d}",
            "age": 18 + p % 70,
            "income": 1000.0 + 101.0 * p + 7.0 * v,
            "default": (p + v) % 2,
        }
        for v in range(3)
        for p in range(PERSONS)
        if p != skip_person
    ]
    _csv(root / "visits.csv", rows)
    (root / "visits.yaml").write_text(
        "name: visits\nfile: visits.csv\nclassification: 内部\nrow_bound: 1000\n"
        "privacy_unit: {id_column: person_id, max_rows: 3}\ncolumns:\n"
        "  - {name: person_id, type: string, role: identifier}\n"
        "  - {name: age, type: int, bounds: [18, 90]}\n"
        "  - {name: income, type: float, bounds: [0, 100000]}\n"
        "  - {name: default, type: int, categories: [0, 1]}\n",
        encoding="utf-8",
    )


def _csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    root.mkdir()
    _write_people(root)
    _write_visits(root)
    return root


def _sides(loader: CatalogLoader, dataset: str) -> dict[tuple, bool]:
    data = loader(dataset)
    sides = {tuple(x): False for x in data.X_train.tolist()}
    sides.update({tuple(x): True for x in data.X_test.tolist()})
    return sides


# --- item 2: a split one row cannot shift ----------------------------------------------------


def test_removing_one_row_moves_no_other_row(catalog_dir: Path, tmp_path: Path) -> None:
    loader = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "nodes"))
    before = _sides(loader, "people")
    assert len(before) == PEOPLE_ROWS  # every row is distinct
    assert 0.1 < sum(before.values()) / PEOPLE_ROWS < 0.3
    _write_people(catalog_dir, skip=7)
    after = _sides(loader, "people")
    assert len(after) == PEOPLE_ROWS - 1
    moved = [row for row, side in after.items() if before[row] != side]
    assert moved == []


def test_split_is_keyed_by_the_node_secret(catalog_dir: Path, tmp_path: Path) -> None:
    one = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "one"))
    two = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "two"))
    assert _sides(one, "people") == _sides(one, "people")  # deterministic for a node
    assert _sides(one, "people") != _sides(two, "people")  # unpredictable without its key
    secret = tmp_path / "one" / "people" / "secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600


# --- item 4: the privacy unit ----------------------------------------------------------------


def test_a_person_with_three_rows_is_trained_on_once(catalog_dir: Path, tmp_path: Path) -> None:
    data = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "n"))("visits")
    assert len(data.y_train) + len(data.y_test) == PERSONS


def test_row_kept_for_a_person_does_not_depend_on_the_others(
    catalog_dir: Path, tmp_path: Path
) -> None:
    loader = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "n"))
    before = _sides(loader, "visits")
    _write_visits(catalog_dir, skip_person=3)
    after = _sides(loader, "visits")
    assert len(after) == PERSONS - 1
    assert set(after) <= set(before)  # the same row of every other person, on the same side
    assert all(before[row] == side for row, side in after.items())


# --- items 5 and 13: the service -------------------------------------------------------------


def _authority(tmp_path: Path, catalog_dir: Path, delta: float = 1e-4) -> Authority:
    catalog = load_catalog(catalog_dir)
    authority = Authority(tmp_path / "state")
    authority.register_dataset(dataset_policy(catalog["people"], epsilon_cap=100.0, delta_cap=0.5))
    now = datetime.now(UTC)
    columns = {c: "aggregate_only" for c in (*FEATURES, "default")}
    authority.create_grant(
        Grant(
            grant_id="T1",
            firm="bank",
            purpose="credit risk",
            legal_basis="contract",
            datasets={"people": DatasetTerms(epsilon=50.0, delta=delta, columns=columns)},
            actions={"train"},
            epsilon_per_use=50.0,
            min_group_size=1,
            models={"logreg"},
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=1),
            approved_by="official",
        )
    )
    return authority


def _spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "model": "logreg",
        "features": FEATURES,
        "label": "default",
        "nodes": ("people",),
        "rounds": 1,
        "sample_rate": 0.5,
        "noise_multiplier": 2.0,
        "target_delta": 1e-6,
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_delta_not_below_one_over_rows_is_refused_before_any_spend(
    tmp_path: Path, catalog_dir: Path
) -> None:
    authority = _authority(tmp_path, catalog_dir)
    service = TrainingService(load_catalog(catalog_dir), authority)
    with pytest.raises(PrivacyParameterError, match="1/row_bound"):
        service.train("bank", "credit risk", _spec(target_delta=0.01))
    assert authority.log.search(kind="reservation") == []
    assert authority.log.search(kind="decision") == []
    assert authority.remaining("T1", "people").epsilon == pytest.approx(50.0)


def test_non_private_job_is_refused_by_the_service_before_any_decision(
    tmp_path: Path, catalog_dir: Path
) -> None:
    """dp=False used to reach the policy engine with an infinite epsilon (pydantic error)."""
    authority = _authority(tmp_path, catalog_dir)
    service = TrainingService(load_catalog(catalog_dir), authority)
    with pytest.raises(TrainingError, match="dp=False"):
        service.train("bank", "credit risk", _spec(dp=False, noise_multiplier=None))
    assert authority.log.search(kind="decision") == []


def test_a_vanishing_sample_rate_is_refused_before_any_decision(
    tmp_path: Path, catalog_dir: Path
) -> None:
    """sample_rate=5e-324 used to overflow the step count (OverflowError)."""
    authority = _authority(tmp_path, catalog_dir)
    service = TrainingService(load_catalog(catalog_dir), authority)
    with pytest.raises(InvalidJobError, match="steps"):
        service.train("bank", "credit risk", _spec(sample_rate=5e-324))
    assert authority.log.search(kind="decision") == []


def _train_message(spec: JobSpec, grants: dict[str, str]) -> Message:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    config = {
        "job": spec.canonical_json(),
        "rows": "{}",
        "grants": json.dumps(grants),
        "server-round": 1,
    }
    state = build_model(spec.model, spec.features, spec.categorical, seed=0).state_dict()
    msg = Message(
        RecordDict({"config": ConfigRecord(config), "arrays": ArrayRecord(torch_state_dict=state)}),
        10,
        MessageType.TRAIN,
    )
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _context() -> Context:
    return Context(1, 10, {"partition-id": 0, "num-partitions": 1}, RecordDict(), {})


def test_failure_after_a_node_trained_leaves_the_reservation_charged(
    tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = _authority(tmp_path, catalog_dir)

    def trains_then_fails(spec, loader, *, budget, node_state=None, grants=None, **kw):
        if node_state is not None:
            handle_train(_train_message(spec, grants), _context(), {"people": loader}, node_state)
        # e.g. the spend check after the run, or a crash while collecting the result
        raise BudgetExceededError("spent epsilon exceeds the reservation; refuse to release")

    monkeypatch.setattr(training, "run_simulation", trains_then_fails)
    service = TrainingService(load_catalog(catalog_dir), authority)
    with pytest.raises(BudgetExceededError):
        service.train("bank", "credit risk", _spec())
    assert authority.log.search(kind="refund") == []
    assert len(authority.log.search(kind="release")) == 1
    assert authority.remaining("T1", "people").epsilon < 50.0


def test_failure_before_any_node_trained_is_refunded_and_cannot_run_later(
    tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = _authority(tmp_path, catalog_dir)
    seen: dict[str, object] = {}

    def fails_at_once(spec, loader, *, budget, node_state=None, grants=None, **kw):
        seen.update(spec=spec, loader=loader, node_state=node_state, grants=grants)
        raise RuntimeError("the simulation engine did not start")

    monkeypatch.setattr(training, "run_simulation", fails_at_once)
    service = TrainingService(load_catalog(catalog_dir), authority)
    with pytest.raises(RuntimeError):
        service.train("bank", "credit risk", _spec())
    assert len(authority.log.search(kind="refund")) == 1
    assert authority.remaining("T1", "people").epsilon == pytest.approx(50.0)
    # The refunded approval is withdrawn on the node: the job can no longer run there.
    spec = seen["spec"]
    with pytest.raises(NodeApprovalError):
        handle_train(
            _train_message(spec, seen["grants"]),  # type: ignore[arg-type]
            _context(),
            {"people": seen["loader"]},  # type: ignore[dict-item]
            str(seen["node_state"]),
        )


def test_loader_output_is_finite_and_one_row_per_person(catalog_dir: Path, tmp_path: Path) -> None:
    data = CatalogLoader(str(catalog_dir), FEATURES, "default", str(tmp_path / "n"))("visits")
    rows = np.vstack([data.X_train, data.X_test])
    assert np.isfinite(rows).all()
    assert len({tuple(r) for r in rows.tolist()}) == PERSONS
