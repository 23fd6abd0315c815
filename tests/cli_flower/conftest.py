"""Test modules import the hub test helpers from ``tests/hub/hub_helpers`` (put on sys.path,
since the suite runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "hub"))
