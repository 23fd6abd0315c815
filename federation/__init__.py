"""Federated training across department nodes with Flower and record-level DP-SGD.

Imports nothing else of this project; a node's data arrives through :mod:`federation.loader`.
The main entry points are :func:`federation.accounting.plan_job` (once, before a job: the
per-node plan and the predicted cost the ledger reserves) and the runners
:func:`federation.simulation.run_simulation` (Ray) and
:func:`federation.inprocess.run_inprocess` (this process). docs/federation.md maps the rest.

Flower's and Ray's usage telemetry is switched off here, the one place that does it: this
module runs before any of its submodules imports ``flwr`` or ``ray``. A variable the
environment already sets is left as it is.
"""

import os
import sys

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# Flower reads its variable once, when its telemetry module is first imported; if something
# imported flwr before this package, tell that module too.
_flwr_telemetry = sys.modules.get("flwr.supercore.telemetry")
if _flwr_telemetry is not None and os.environ["FLWR_TELEMETRY_ENABLED"] == "0":
    setattr(_flwr_telemetry, "FLWR_TELEMETRY_ENABLED", "0")  # noqa: B010 (a module constant)
