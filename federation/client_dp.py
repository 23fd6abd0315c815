"""Client-level differential privacy: an opt-in for federations of many nodes.

The unit here is a whole node: the guarantee covers adding or removing one node's entire
contribution to every round. With a handful of departments that unit is wrong (it protects
departments, not persons, and the noise that hides one of four updates drowns the model), so a
job may ask for it only with at least :data:`MIN_CLIENT_DP_NODES` nodes, on top of the
record-level DP-SGD every node runs anyway.

One round (DP-FedAvg with a fixed denominator, McMahan et al. 2018):

1. the server samples each node independently with probability ``q = client_sample_rate``
   (Poisson sampling, with the operating system's random source);
2. each sampled node trains and sends its weights; the server computes its update
   ``w_node - w_global`` and clips it to L2 norm ``C = client_clipping_norm``;
3. the clipped updates are summed and OpenDP's Gaussian mechanism adds noise of standard
   deviation ``sigma * C`` to every coordinate of the sum (sensitivity ``C``: one node more or
   less changes the sum by at most ``C``);
4. the new global weights are ``w_global + noisy_sum / (q * N)``, with ``N`` the public number
   of nodes in the job, so the denominator does not depend on who was sampled.

Each round is a Poisson-subsampled Gaussian mechanism on nodes; over ``rounds`` rounds its
epsilon comes from Opacus' RDP accountant with sampling rate ``q``
(:func:`federation.accounting.client_level_epsilon`, re-exported here with the other client-level
accounting). Nothing here samples noise by hand.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import opendp.prelude as dp

from federation.accounting import (
    MIN_CLIENT_DP_NODES,
    client_level_cost,
    client_level_epsilon,
    client_noise_multiplier,
)
from federation.errors import MechanismError

dp.enable_features("contrib")

__all__ = [
    "MIN_CLIENT_DP_NODES",
    "aggregate",
    "client_level_cost",
    "client_level_epsilon",
    "client_noise_multiplier",
    "clip_update",
    "clipped_sum",
    "gaussian_noise_sum",
    "sample_nodes",
]

Weights = Mapping[str, np.ndarray]


def sample_nodes(node_ids: Sequence[int], rate: float) -> list[int]:
    """Poisson sampling: each node independently with probability ``rate`` (OS randomness)."""
    rng = secrets.SystemRandom()
    return [n for n in node_ids if rng.random() < rate]


def clip_update(update: Weights, clipping_norm: float) -> dict[str, np.ndarray]:
    """Scale ``update`` (all arrays taken together) down to L2 norm at most ``clipping_norm``."""
    squares = (float((np.asarray(v, dtype=np.float64) ** 2).sum()) for v in update.values())
    norm = math.sqrt(sum(squares))
    factor = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    return {k: np.asarray(v, dtype=np.float64) * factor for k, v in update.items()}


def clipped_sum(
    global_weights: Weights, node_weights: Sequence[Weights], clipping_norm: float
) -> dict[str, np.ndarray]:
    """Sum over nodes of their clipped updates ``clip(w_node - w_global)``."""
    total = {k: np.zeros_like(np.asarray(v), dtype=np.float64) for k, v in global_weights.items()}
    for weights in node_weights:
        update = {
            k: np.asarray(weights[k], dtype=np.float64) - np.asarray(g, dtype=np.float64)
            for k, g in global_weights.items()
        }
        for k, v in clip_update(update, clipping_norm).items():
            total[k] += v
    return total


def gaussian_noise_sum(
    total: Weights, clipping_norm: float, noise_multiplier: float
) -> dict[str, np.ndarray]:
    """``total`` plus OpenDP Gaussian noise of standard deviation ``noise_multiplier * C`` on
    every coordinate (an L2-sensitivity-``C`` Gaussian mechanism)."""
    keys = list(total)
    flat = np.concatenate([np.asarray(total[k], dtype=np.float64).ravel() for k in keys])
    measurement = dp.m.make_gaussian(
        dp.vector_domain(dp.atom_domain(T=float, nan=False), size=len(flat)),
        dp.l2_distance(T=float),
        scale=noise_multiplier * clipping_norm,
    )
    # zero-concentrated DP of the mechanism for sensitivity C: rho = 1 / (2 sigma^2)
    rho = measurement.map(clipping_norm)  # type: ignore[no-untyped-call]
    if rho > 1.0 / (2 * noise_multiplier**2) * (1 + 1e-6):
        raise MechanismError(
            "the Gaussian measurement is weaker than the accounted noise multiplier; nothing "
            "was released. Report this with the job's configuration hash"
        )
    noisy = np.asarray(measurement(flat.tolist()), dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    start = 0
    for k in keys:
        shape = np.asarray(total[k]).shape
        size = int(np.prod(shape))
        out[k] = noisy[start : start + size].reshape(shape)
        start += size
    return out


def aggregate(
    global_weights: Weights,
    node_weights: Sequence[Weights],
    *,
    clipping_norm: float,
    noise_multiplier: float,
    expected_nodes: float,
) -> dict[str, np.ndarray]:
    """One DP-FedAvg round: ``w + (sum of clipped updates + Gaussian noise) / expected_nodes``.

    ``expected_nodes`` is ``client_sample_rate * len(spec.nodes)``: public, never the number of
    nodes that actually answered.
    """
    total = clipped_sum(global_weights, node_weights, clipping_norm)
    noisy = gaussian_noise_sum(total, clipping_norm, noise_multiplier)
    return {
        k: (np.asarray(v, dtype=np.float64) + noisy[k] / expected_nodes).astype(np.asarray(v).dtype)
        for k, v in global_weights.items()
    }
