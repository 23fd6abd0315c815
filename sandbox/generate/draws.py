"""Seeded random streams and the small helpers that turn draws into typed columns.

>>> rng = stream(seed=7, city=0, dataset=0)
>>> pick(rng, np.array([0.0, 1.0, 1.0, 0.0]), 2).tolist()
[1, 2]
>>> ids("person_id", "370100-", np.arange(2), 4).to_list()
['370100-0000', '370100-0001']
"""

from __future__ import annotations

import numpy as np
import polars as pl


def stream(seed: int, city: int, dataset: int) -> np.random.Generator:
    """An independent stream per (seed, city, dataset), stable when other streams change."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(city, dataset)))
    )


def labels(name: str, values: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    """The labels ``values[code]`` as a string column."""
    return pl.Series(name, values, dtype=pl.String).gather(codes.astype(np.uint32))


def ids(name: str, prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """Identifiers ``prefix`` + zero-padded ``numbers``."""
    digits = pl.Series(name, numbers, dtype=pl.UInt64).cast(pl.String).str.zfill(width)
    return (prefix + digits).alias(name)


def pick(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability ~ weights (Efraimidis-Spirakis), sorted."""
    k = min(k, weights.size)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.log(rng.random(weights.size)) / np.maximum(weights, 1e-9)
    return np.sort(np.argpartition(-keys, k - 1)[:k])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, elementwise."""
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def money(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Amounts clipped to public bounds and rounded to cents."""
    return np.asarray(np.round(np.clip(x, *bounds), 2))
