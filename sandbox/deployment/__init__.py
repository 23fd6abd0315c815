"""Federated training over real Flower deployment processes (SuperLink, SuperNodes, a FAB
started with ``flwr run``); see docs/deployment.md. Ray simulation stays the embedded,
single-machine mode (:mod:`federation.simulation`)."""
