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

from sandbox.lazy import lazy_exports

#: Where each public name lives. They are imported on first use, so that the command line
#: (``sandbox --help``, ``sandbox certs ...``) does not load the query engine and gRPC stack.
_WHERE = {
    "RunningNode": "sandbox.node.server",
    "serve": "sandbox.node.server",
    "start": "sandbox.node.server",
    "NodeService": "sandbox.node.service",
}


__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = ["NodeService", "RunningNode", "serve", "start"]
