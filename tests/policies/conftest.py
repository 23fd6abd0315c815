"""Fixture: a state directory with one registered dataset and one grant.

Test modules import the builders from ``policy_helpers`` (this folder is put on sys.path,
since the suite runs with ``--import-mode=importlib``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from policy_helpers import NOW, credit_grant, tax_dataset  # noqa: E402

from policies import Authority  # noqa: E402


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    a = Authority(tmp_path / "state", clock=lambda: NOW)
    a.register_dataset(tax_dataset())
    a.create_grant(credit_grant())
    return a
