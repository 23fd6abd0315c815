"""A real authority state for the web view: two datasets, a grant with three releases, a
pending access request; and an API key store with a regulator, a department and a firm."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policies.authority import Authority
from policies.datasets import DatasetPolicy
from policies.grants import Action, ColumnRule, DatasetTerms, Grant
from policies.requests import Request
from sandbox.credentials import ApiKeyStore
from sandbox.hub.access import workflow_for

PURPOSE = "labour-market research"


@dataclass
class WebState:
    root: Path
    authority: Authority
    keys: ApiKeyStore
    regulator: str
    department: str
    firm: str
    request_id: str


def _grant() -> Grant:
    now = datetime.now(UTC)
    return Grant(
        grant_id="G-1",
        firm="acme",
        datasets={
            "pums": DatasetTerms(epsilon=5.0, delta=0.0, columns={"*": ColumnRule.AGGREGATE_ONLY})
        },
        purpose=PURPOSE,
        legal_basis="个人信息保护法 art. 13(5)",
        actions=frozenset({Action.QUERY}),
        epsilon_per_use=1.0,
        min_group_size=5,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
        approved_by="official-1",
    )


def _terms() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "purpose": "credit-risk-statistics",
        "legal_basis": "个人信息保护法 第十三条",
        "actions": ["query"],
        "epsilon_per_use": 0.5,
        "min_group_size": 20,
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=60)).isoformat(),
        "datasets": {
            "income": {"epsilon": 2.0, "delta": 0.0, "columns": {"tax": "aggregate_only"}}
        },
    }


def build_state(root: Path) -> WebState:
    authority = Authority(root / "state")
    authority.register_dataset(
        DatasetPolicy(dataset_id="pums", department="census", epsilon_cap=20.0, delta_cap=0.0)
    )
    authority.register_dataset(
        DatasetPolicy(dataset_id="income", department="tax", epsilon_cap=10.0, delta_cap=0.0)
    )
    authority.create_grant(_grant())
    for _ in range(3):
        decision = authority.decide(
            Request.model_validate(
                {
                    "firm": "acme",
                    "dataset": "pums",
                    "purpose": PURPOSE,
                    "action": "query",
                    "epsilon": 0.5,
                    "columns": [{"name": "*", "use": "aggregate"}],
                }
            )
        )
        reservation = authority.reserve(decision)
        authority.commit(reservation, b"released values")
    request = workflow_for(authority).submit("bank", _terms())
    keys = ApiKeyStore(root / "keys.db")
    return WebState(
        root,
        authority,
        keys,
        keys.issue("regulator", "csrc"),
        keys.issue("department", "tax"),
        keys.issue("firm", "acme"),
        request.request_id,
    )


@pytest.fixture
def web_state(tmp_path: Path) -> Iterator[WebState]:
    yield build_state(tmp_path)
