"""How a department hands its local data to federated training.

A node supplies a :class:`Loader`: a callable ``load(node_id) -> NodeData``. It runs on the node,
and nothing it returns leaves the node; only DP-protected model updates and DP metrics do.
Features must be scaled with *public* bounds (from the catalog metadata), never with statistics
of the rows, so that every node feeds the model the same encoding. A loader returns at most one
row per person (the privacy unit): DP-SGD and the DP counts account per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from federation.errors import NodeDataError


@dataclass(frozen=True)
class NodeData:
    """One node's training and held-out rows for one job.

    ``X_*`` are float arrays of shape (rows, features); categorical columns hold integer codes
    ``0 .. cardinality-1``. ``y_*`` are 0/1 labels, or class indices ``0 .. K-1`` for a job
    with K >= 3 classes.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    categorical: Mapping[str, int] = field(default_factory=dict)

    def check(self, features: Sequence[str], node_id: str, num_classes: int = 2) -> None:
        """Raise :class:`NodeDataError` if the arrays do not match the job's feature list."""
        if tuple(features) != tuple(self.feature_names):
            raise NodeDataError(
                f"node {node_id!r} returned features {list(self.feature_names)}, but the job "
                f"asks for {list(features)}; make the loader return the job's features in order"
            )
        for split, X, y in (
            ("train", self.X_train, self.y_train),
            ("test", self.X_test, self.y_test),
        ):
            if X.ndim != 2 or X.shape[1] != len(features) or X.shape[0] != y.shape[0]:
                raise NodeDataError(
                    f"node {node_id!r} {split} split has X of shape {X.shape} and y of shape "
                    f"{y.shape}; expected (rows, {len(features)}) and (rows,)"
                )
            if not np.isin(y, range(num_classes)).all():
                raise NodeDataError(
                    f"node {node_id!r} {split} labels must be class indices 0 to {num_classes - 1}"
                    if num_classes > 2
                    else f"node {node_id!r} {split} labels must be 0 or 1"
                )
            if not np.isfinite(X).all():
                raise NodeDataError(
                    f"node {node_id!r} {split} features contain NaN or infinity; impute them "
                    f"in the loader"
                )
        if self.X_train.shape[0] == 0:
            raise NodeDataError(f"node {node_id!r} has no training rows")


class Loader(Protocol):
    """Returns the local data of ``node_id``. Must be picklable (it is shipped to the node's
    worker process in simulation)."""

    def __call__(self, node_id: str) -> NodeData: ...
