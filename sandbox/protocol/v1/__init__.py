"""Version 1 of the sandbox API: ``sandbox.proto`` and the code generated from it.

The generated modules (``sandbox_pb2``, ``sandbox_pb2_grpc``) are checked in; regenerate them
with ``python -m sandbox.protocol.generate`` after editing ``sandbox.proto``.
"""
