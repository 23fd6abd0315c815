"""Federated training across department nodes with Flower and record-level DP-SGD.

Imports nothing else of this project; a node's data arrives through :mod:`federation.loader`.
The main entry points are :func:`federation.accounting.predict_cost` (before a job, for the
ledger's reservation) and :func:`federation.simulation.run_simulation`.
"""

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
