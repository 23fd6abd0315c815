"""A small synthetic, non-IID tabular task for demos and tests of the federation runner.

Each node draws its own rows from a logistic model with a node-specific shift of the features,
so nodes differ in distribution (non-IID) but share the labelling rule.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federation.loader import NodeData

SYNTHETIC_FEATURES: tuple[str, ...] = ("x0", "x1", "x2", "x3", "sector")
SYNTHETIC_CATEGORICAL: dict[str, int] = {"sector": 4}


@dataclass(frozen=True)
class SyntheticLoader:
    """``load(node_id)``: ``rows`` rows for the node, 80% train and 20% held out.

    >>> data = SyntheticLoader(rows=100)("a")
    >>> data.X_train.shape
    (80, 5)
    """

    rows: int = 400
    seed: int = 0
    scale: float = 1.0

    def __call__(self, node_id: str) -> NodeData:
        rng = np.random.default_rng([self.seed, zlib.crc32(node_id.encode())])
        shift = rng.normal(0, 0.5, size=4)
        numeric = rng.normal(shift, 1.0, size=(self.rows, 4))
        sector = rng.integers(0, 4, size=self.rows)
        logit = 1.5 * numeric[:, 0] - 1.0 * numeric[:, 1] + 0.5 * (sector == 2) - 0.2
        y = (rng.random(self.rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        X = np.column_stack([numeric * self.scale, sector]).astype(np.float32)
        return _split(X, y)


@dataclass(frozen=True)
class FlakyLoader:
    """A failure drill: serves ``SyntheticLoader`` data, but node ``fail_node`` crashes every
    call after its first (so it answers the describe step, then fails mid-round).

    Calls are tallied in the file ``marker`` so the drill works across worker processes.
    """

    fail_node: str
    marker: str
    inner: SyntheticLoader = SyntheticLoader()

    def __call__(self, node_id: str) -> NodeData:
        if node_id == self.fail_node:
            path = Path(self.marker)
            if path.exists():
                raise RuntimeError(f"node {node_id} went down (failure drill)")
            path.write_text("called")
        return self.inner(node_id)


@dataclass(frozen=True)
class SyntheticMulticlassLoader:
    """A learnable three-class task: the class is the softmax of three linear scores of the
    numeric columns, sharpened so a linear model separates them well; 80% train, 20% held out.

    >>> data = SyntheticMulticlassLoader(rows=100)("a")
    >>> sorted(set(data.y_train.tolist()))
    [0.0, 1.0, 2.0]
    """

    rows: int = 600
    seed: int = 0

    def __call__(self, node_id: str) -> NodeData:
        rng = np.random.default_rng([self.seed, zlib.crc32(node_id.encode()), 3])
        numeric = rng.normal(rng.normal(0, 0.3, size=4), 1.0, size=(self.rows, 4))
        sector = rng.integers(0, 4, size=self.rows)
        scores = 3.0 * np.column_stack(
            [numeric[:, 0], numeric[:, 1], -numeric[:, 0] - numeric[:, 1]]
        )
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        y = np.array([rng.choice(3, p=p) for p in probs], dtype=np.float32)
        X = np.column_stack([numeric, sector]).astype(np.float32)
        return _split(X, y)


def _split(X: np.ndarray, y: np.ndarray) -> NodeData:
    """The first 80% of the rows for training, the rest held out."""
    cut = int(0.8 * len(y))
    return NodeData(
        X_train=X[:cut],
        y_train=y[:cut],
        X_test=X[cut:],
        y_test=y[cut:],
        feature_names=SYNTHETIC_FEATURES,
        categorical=dict(SYNTHETIC_CATEGORICAL),
    )
