"""Flower's object-pull backoff as the upstream proposal would make it configurable
(docs/deployment.md), for the benchmark only: on ``PYTHONPATH`` of every Flower process the
benchmark starts, so each reads ``FLWR_PULL_INITIAL_BACKOFF`` before Flower's modules bind the
constant (1 s first wait, then doubling up to 10 s, in Flower 1.42). The product runs Flower
unchanged."""

import os

if os.environ.get("FLWR_PULL_INITIAL_BACKOFF"):
    import flwr.supercore.constant as _constant

    _first = float(os.environ["FLWR_PULL_INITIAL_BACKOFF"])
    setattr(_constant, "PULL_INITIAL_BACKOFF", _first)  # noqa: B010
    setattr(_constant, "PULL_BACKOFF_CAP", 10 * _first)  # noqa: B010
