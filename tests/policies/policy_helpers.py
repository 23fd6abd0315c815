"""Builders of the dataset, grant and request most policy tests start from."""

from __future__ import annotations

from datetime import UTC, datetime

from policies import (
    Action,
    ColumnRef,
    ColumnRule,
    DatasetPolicy,
    DatasetTerms,
    Grant,
    Request,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def tax_dataset(**overrides: object) -> DatasetPolicy:
    fields: dict[str, object] = {
        "dataset_id": "tax",
        "department": "税务局",
        "identity_columns": frozenset({"id_card_number"}),
        "epsilon_cap": 10.0,
        "delta_cap": 1e-5,
    }
    fields.update(overrides)
    return DatasetPolicy(**fields)  # type: ignore[arg-type]


def credit_grant(**overrides: object) -> Grant:
    fields: dict[str, object] = {
        "grant_id": "g-credit",
        "firm": "acme",
        "purpose": "credit-risk-statistics",
        "legal_basis": "个人信息保护法 第十三条; 数据安全法 第三十八条",
        "actions": frozenset({Action.QUERY, Action.TRAIN}),
        "epsilon_per_use": 1.0,
        "min_group_size": 20,
        "models": frozenset({"logreg-v1"}),
        "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
        "valid_until": datetime(2027, 1, 1, tzinfo=UTC),
        "approved_by": "王芳 (税务局数据处)",
        "datasets": {
            "tax": DatasetTerms(
                epsilon=3.0,
                delta=1e-6,
                columns={
                    "income": ColumnRule.AGGREGATE_ONLY,
                    "region": ColumnRule.GROUP_BY,
                    "age": ColumnRule.FILTER_ONLY,
                    "id_card_number": ColumnRule.GROUP_BY,  # the global rule still forbids it
                    "name": ColumnRule.NEVER,
                },
            )
        },
    }
    fields.update(overrides)
    return Grant(**fields)  # type: ignore[arg-type]


def query(**overrides: object) -> Request:
    fields: dict[str, object] = {
        "firm": "acme",
        "dataset": "tax",
        "purpose": "credit-risk-statistics",
        "action": Action.QUERY,
        "columns": (
            ColumnRef(name="income", use="aggregate"),
            ColumnRef(name="region", use="group_by"),
            ColumnRef(name="age", use="filter"),
        ),
        "epsilon": 0.5,
        "delta": 1e-8,
        "min_group_size": 20,
    }
    fields.update(overrides)
    return Request(**fields)  # type: ignore[arg-type]
