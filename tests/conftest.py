"""Shared fixtures. Tests never read ../shared: data they need lives in the repository."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pums_catalog_dir() -> Path:
    return ROOT / "examples" / "pums"
