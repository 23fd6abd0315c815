"""The sandbox's versioned gRPC API: ``sandbox/protocol/v1/sandbox.proto`` (package ``sandbox.v1``).

* :mod:`sandbox.protocol.v1` — the .proto file and the Python code generated from it
  (``sandbox_pb2``, ``sandbox_pb2_grpc``, ``sandbox_pb2.pyi``), checked in.
* :mod:`sandbox.protocol.generate` — regenerates that code
  (``python -m sandbox.protocol.generate``).
* :mod:`sandbox.protocol.rules` — the no-row-data rule, checked on every message of the API.

Importing this package loads nothing generated; import ``sandbox.protocol.v1.sandbox_pb2``
where the messages are needed.

>>> PROTOCOL_VERSION, SERVICES[0]
('sandbox.v1', 'sandbox.v1.FirmService')
"""

from __future__ import annotations

#: The protobuf package of the current API version.
PROTOCOL_VERSION = "sandbox.v1"

#: Every service of the current version, by full name (what server reflection lists).
SERVICES = (
    "sandbox.v1.FirmService",
    "sandbox.v1.DepartmentService",
    "sandbox.v1.NodeService",
    "sandbox.v1.RegulatorService",
)
