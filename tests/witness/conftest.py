"""The witness tests reuse the hub tests' helpers (``tests/hub/hub_helpers.py``: the PKI and
the real node service over mTLS)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "hub"))
