"""A node's odometer is renewed every ODOMETER_QUERIES releases; its total carries over."""

from __future__ import annotations

from pathlib import Path

import pytest

import sandbox.query.context as context
from sandbox.catalog import load_catalog
from sandbox.query import QueryEngine

PUMS = Path(__file__).resolve().parents[2] / "examples" / "pums"


def test_the_odometer_is_renewed_and_its_total_carried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "ODOMETER_QUERIES", 3)
    engine = QueryEngine(load_catalog(PUMS))
    queryables = []
    for _ in range(7):
        prepared = engine.prepare("SELECT COUNT(*) AS n FROM pums", 0.25)
        prepared.release()
        queryables.append(prepared._ctx._queryable)
    assert len({id(q) for q in queryables}) == 3  # 3 + 3 + 1 releases
    eps, delta = prepared._ctx.odometer_loss()
    assert eps == pytest.approx(7 * 0.25) and delta == 0.0
