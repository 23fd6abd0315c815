"""The department node as a gRPC service (``sandbox.v1.NodeService``).

* :mod:`~sandbox.node.service` — :class:`NodeService`: verifies each signed instruction with
  the node's own guard (:mod:`sandbox.node_guard`) and answers with DP releases and public
  metadata only.
* :mod:`~sandbox.node.server` — :func:`start` / :func:`serve`: the gRPC server with mTLS
  (only the hub may call), health and reflection.
* :mod:`~sandbox.node.convert` — query results and manifests as protocol messages.
* :mod:`~sandbox.node.cli` — ``sandbox node serve`` and ``sandbox node cap``.

See ``docs/node.md`` ("The node service").
"""

from sandbox.node.server import RunningNode, serve, start
from sandbox.node.service import NodeService

__all__ = ["NodeService", "RunningNode", "serve", "start"]
