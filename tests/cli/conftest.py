"""The real hub and mTLS node of tests/client (one module-scoped setup), reused here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "client_setup", Path(__file__).parents[1] / "client" / "test_client.py"
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules["client_setup"] = _module
_spec.loader.exec_module(_module)

setup = _module.setup  # the fixture: a hub, a node, a CA, firm "acme" with grant g-acme
Setup = _module._Setup
PURPOSE = _module.PURPOSE
SQL = _module.SQL
