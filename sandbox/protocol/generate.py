"""Regenerate the Python code of the sandbox API from its .proto files.

The generated files are checked in next to each .proto file; a test regenerates them into a
temporary folder and fails when the checked-in copies are stale. Regenerate after editing a
.proto file, from the repository root::

    python -m sandbox.protocol.generate            # in place, into sandbox/protocol/
    python -m sandbox.protocol.generate OUT_DIR    # elsewhere: OUT_DIR/v1/sandbox_pb2.py, ...

Besides protoc's output (``NAME_pb2.py``, its ``.pyi`` stub and ``NAME_pb2_grpc.py``) it writes
``NAME_pb2_grpc.pyi``: typed stubs of the gRPC stubs, servicers and ``add_*_to_server``
functions (protoc writes those untyped), so that strict mypy checks the code that serves and
calls the API.

It needs ``grpcio-tools`` (the ``dev`` extra), pinned to the release whose protobuf matches the
runtime's (1.81.x for protobuf 6); another release writes different version checks into the
code, so the staleness test fails until the pinned one is installed.

>>> [f"{p.parent.name}/{p.name}" for p in generated_files(PROTOCOL_DIR)]
['v1/sandbox_pb2.py', 'v1/sandbox_pb2.pyi', 'v1/sandbox_pb2_grpc.py', 'v1/sandbox_pb2_grpc.pyi']
"""

from __future__ import annotations

import importlib
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

# protobuf ships no type information (types-protobuf would add it): its names are Any here.
from google.protobuf import descriptor_pb2  # type: ignore[import-untyped,unused-ignore]

from sandbox.errors import ProtocolError

#: ``sandbox/protocol``: the generated code lands beside each .proto file below it.
PROTOCOL_DIR = Path(__file__).resolve().parent

#: The folder protoc imports from: .proto paths (and the generated imports) are relative to it.
SOURCE_ROOT = PROTOCOL_DIR.parents[1]

#: Every .proto file, relative to :data:`SOURCE_ROOT`.
PROTO_FILES = ("sandbox/protocol/v1/sandbox.proto",)

#: What protoc writes for one .proto file ``NAME.proto``.
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

#: protoc writes these; :func:`grpc_stub_text` writes the ``_pb2_grpc.pyi`` stub.
PROTOC_SUFFIXES = SUFFIXES[:3]


def generated_files(out_dir: Path) -> list[Path]:
    """Where :func:`generate` writes each generated file under ``out_dir``."""
    files: list[Path] = []
    for proto in PROTO_FILES:
        rel = Path(proto).relative_to("sandbox/protocol")
        stem = rel.with_suffix("").name
        files.extend(out_dir / rel.parent / f"{stem}{suffix}" for suffix in SUFFIXES)
    return files


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto file and write the Python code under ``out_dir``.

    ``out_dir`` mirrors ``sandbox/protocol`` (``out_dir/v1/sandbox_pb2.py``, ...); give
    :data:`PROTOCOL_DIR` to regenerate in place. Returns the files written. Raises
    :class:`~sandbox.errors.ProtocolError` when grpcio-tools is missing or protoc fails.
    """
    try:
        protoc = importlib.import_module("grpc_tools.protoc")
    except ImportError:
        raise ProtocolError(
            "grpcio-tools is not installed: install the dev extra (pip install -e '.[dev]')"
        ) from None
    includes = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{SOURCE_ROOT}",
            f"-I{includes}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--descriptor_set_out={tmp}/descriptors.pb",
            *(str(SOURCE_ROOT / proto) for proto in PROTO_FILES),
        ]
        status = protoc.main(args)
        if status != 0:
            raise ProtocolError(
                f"protoc failed (exit status {status}) on {', '.join(PROTO_FILES)}: "
                "fix the .proto file using the messages printed above"
            )
        descriptors = descriptor_pb2.FileDescriptorSet.FromString(
            (Path(tmp) / "descriptors.pb").read_bytes()
        )
        for file in descriptors.file:
            stem = Path(tmp) / Path(file.name).with_suffix("")
            stub = stem.parent / f"{stem.name}_pb2_grpc.pyi"
            stub.write_text(grpc_stub_text(file), encoding="utf-8")
        written: list[Path] = []
        for target in generated_files(out_dir):
            source = Path(tmp) / "sandbox/protocol" / target.relative_to(out_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    return written


_STUB_HEADER = """\
# Typed stubs of {module}_grpc.py, written by sandbox/protocol/generate.py. DO NOT EDIT!
# source: {source}
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from {package} import {module}

_Req = TypeVar("_Req", contravariant=True)
_Resp = TypeVar("_Resp", covariant=True)

class _UnaryCall(Protocol, Generic[_Req, _Resp]):
    def __call__(
        self,
        request: _Req,
        timeout: float | None = ...,
        metadata: Any = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> _Resp: ...
    def with_call(self, request: _Req, timeout: float | None = ..., metadata: Any = ...) -> Any: ...
    def future(self, request: _Req, timeout: float | None = ..., metadata: Any = ...) -> Any: ...

class _StreamCall(Protocol, Generic[_Req, _Resp]):
    def __call__(
        self,
        request: _Req,
        timeout: float | None = ...,
        metadata: Any = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Iterator[_Resp]: ...
"""


def grpc_stub_text(file: descriptor_pb2.FileDescriptorProto) -> str:
    """The typed ``_pb2_grpc.pyi`` stub of one .proto file (its services and methods).

    >>> proto = descriptor_pb2.FileDescriptorProto(name="x/v1/api.proto", package="x.v1")
    >>> method = proto.service.add(name="Api").method.add(name="Get")
    >>> method.input_type, method.output_type = ".x.v1.GetRequest", ".x.v1.GetResponse"
    >>> text = grpc_stub_text(proto)
    >>> "    Get: _UnaryCall[api_pb2.GetRequest, api_pb2.GetResponse]" in text
    True
    """
    path = Path(file.name)
    module = f"{path.stem}_pb2"
    lines = [
        _STUB_HEADER.format(
            module=module, source=file.name, package=".".join(path.parent.parts)
        ).rstrip("\n")
    ]

    def local(type_name: str) -> str:
        return f"{module}.{type_name.removeprefix(f'.{file.package}.')}"

    for service in file.service:
        stub = [f"class {service.name}Stub:", "    def __init__(self, channel: Any) -> None: ..."]
        servicer = [f"class {service.name}Servicer:"]
        for method in service.method:
            request, response = local(method.input_type), local(method.output_type)
            call = "_StreamCall" if method.server_streaming else "_UnaryCall"
            incoming = f"Iterator[{request}]" if method.client_streaming else request
            outgoing = f"Iterator[{response}]" if method.server_streaming else response
            stub.append(f"    {method.name}: {call}[{incoming}, {response}]")
            servicer.append(
                f"    def {method.name}(self, request: {incoming}, context: Any) -> {outgoing}: ..."
            )
        if not service.method:
            servicer.append("    pass")
        lines += ["", "", *stub, "", "", *servicer, "", ""]
        lines.append(
            f"def add_{service.name}Servicer_to_server("
            f"servicer: {service.name}Servicer, server: Any) -> None: ..."
        )
    return "\n".join(lines) + "\n"


def stale_files(out_dir: Path = PROTOCOL_DIR) -> list[str]:
    """The generated files under ``out_dir`` that differ from a fresh generation (or are missing).

    An empty list means the checked-in code matches the .proto files.
    """
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale: list[str] = []
        for new, old in zip(fresh, generated_files(out_dir), strict=True):
            if not old.exists() or old.read_bytes() != new.read_bytes():
                stale.append(str(old.relative_to(out_dir)))
    return stale


def main(argv: list[str] | None = None) -> int:
    """``python -m sandbox.protocol.generate [OUT_DIR]``: regenerate, print what was written."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: python -m sandbox.protocol.generate [OUT_DIR]", file=sys.stderr)
        return 2
    out_dir = Path(args[0]) if args else PROTOCOL_DIR
    try:
        written = generate(out_dir)
    except ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
