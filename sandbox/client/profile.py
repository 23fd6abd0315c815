"""Where the hub is and how to prove who we are: a client profile, and the connection it opens.

A profile holds the hub's address, the CA certificate that signed the hub's TLS certificate, and
a credential: a client certificate and key (mTLS port) or an API key (API-key port). It is read
from a TOML or YAML file (``$SANDBOX_PROFILE``, else ``~/.config/sandbox/profile.toml``) and
from the environment (``SANDBOX_HUB``, ``SANDBOX_CA``, ``SANDBOX_CERT``, ``SANDBOX_KEY``,
``SANDBOX_API_KEY``), which overrides the file field by field. Never from a command-line
argument: a key there is visible to every user of the machine (``ps``) and in shell history.
A profile file holding an API key must be readable by its owner only (``chmod 600``).

>>> p = Profile(hub="127.0.0.1:50052", api_key="sbx_0123456789abcdef_s3cret")
>>> "s3cret" in repr(p), p.metadata()[0][0]
(False, 'authorization')
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped,unused-ignore]

from sandbox.errors import (
    ClientBudgetExhausted,
    ClientError,
    ClientInvalidRequest,
    ClientNotFound,
    ClientNotReleased,
    ClientPermissionDenied,
    ClientUnauthenticated,
    HubUnavailable,
    ProfileError,
)

#: The profile file read when ``$SANDBOX_PROFILE`` is unset.
DEFAULT_PROFILE = Path("~/.config/sandbox/profile.toml")
#: Environment variables and the profile fields they set.
ENV_FIELDS = {
    "SANDBOX_HUB": "hub",
    "SANDBOX_CA": "ca",
    "SANDBOX_CERT": "cert",
    "SANDBOX_KEY": "key",
    "SANDBOX_API_KEY": "api_key",
}
_FIELDS = frozenset(ENV_FIELDS.values())
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Profile:
    """A hub address, the CA to trust (``None``: the system's roots) and a credential."""

    hub: str
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    api_key: str | None = field(default=None, repr=False)
    source: str = "arguments"

    def __post_init__(self) -> None:
        if not self.hub:
            raise ProfileError(
                f'no hub address in {self.source}; set SANDBOX_HUB or `hub = "host:port"`'
            )
        if (self.cert is None) != (self.key is None):
            raise ProfileError(
                f"{self.source} gives a client certificate without its key or a key without its "
                "certificate; set both cert and key (SANDBOX_CERT, SANDBOX_KEY)"
            )
        if self.cert is None and not self.api_key:
            raise ProfileError(
                f"{self.source} holds no credential; set cert and key (mTLS port) or api_key "
                "(API-key port), or SANDBOX_CERT/SANDBOX_KEY or SANDBOX_API_KEY"
            )

    @classmethod
    def from_file(cls, path: Path | str) -> Profile:
        """A profile from a TOML (or ``.yaml``/``.yml``) file; relative paths in it are read
        from the file's folder. Refused when it holds an API key and others may read it."""
        fields = _read_file(Path(path).expanduser())
        return cls._build(fields, str(path))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Profile:
        """A profile from ``SANDBOX_HUB``, ``SANDBOX_CA``, ``SANDBOX_CERT``, ``SANDBOX_KEY``,
        ``SANDBOX_API_KEY``."""
        env = os.environ if environ is None else environ
        return cls._build(_env_fields(env), "the environment")

    @classmethod
    def load(
        cls, path: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> Profile:
        """The profile file (``path``, ``$SANDBOX_PROFILE`` or the default if it exists),
        with environment variables overriding its fields."""
        env = os.environ if environ is None else environ
        named = path if path is not None else env.get("SANDBOX_PROFILE")
        fields: dict[str, Any] = {}
        source = "the environment"
        if named:
            fields = _read_file(Path(named).expanduser())
            source = str(named)
        else:
            default = Path(env.get("HOME", "~")) / ".config/sandbox/profile.toml"
            default = default.expanduser()
            if default.is_file():
                fields = _read_file(default)
                source = str(default)
        overrides = _env_fields(env)
        if overrides and fields:
            source = f"{source} and the environment"
        fields.update(overrides)
        return cls._build(fields, source)

    @classmethod
    def _build(cls, fields: Mapping[str, Any], source: str) -> Profile:
        def path(name: str) -> Path | None:
            value = fields.get(name)
            return None if value in (None, "") else Path(str(value)).expanduser()

        api_key = fields.get("api_key")
        return cls(
            hub=str(fields.get("hub") or ""),
            ca=path("ca"),
            cert=path("cert"),
            key=path("key"),
            api_key=str(api_key) if api_key else None,
            source=source,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the API key as a bearer token, or nothing."""
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def channel_credentials(self) -> Any:
        """TLS channel credentials: the CA as root, and the client certificate if any."""
        ca = _read(self.ca, "ca") if self.ca else None
        if self.cert is None or self.key is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=_read(self.key, "key"),
            certificate_chain=_read(self.cert, "cert"),
        )


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ProfileError(
            f"cannot read the profile's {name} file {path}: {exc.strerror}"
        ) from None


def _env_fields(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[var] for var, name in ENV_FIELDS.items() if env.get(var)}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ProfileError(
            f"cannot read the profile {path}: {exc.strerror}; check SANDBOX_PROFILE"
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # only for YAML profiles

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProfileError(f"the profile {path} is not valid TOML/YAML: {first}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"the profile {path} must be a table of hub, ca, cert, key, api_key")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ProfileError(
            f"the profile {path} has unknown fields {unknown}; use {sorted(_FIELDS)}"
        )
    if data.get("api_key") and stat.S_IMODE(mode) & 0o077:
        raise ProfileError(
            f"the profile {path} holds an API key and others may read it "
            f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )
    for name in ("ca", "cert", "key"):
        value = data.get(name)
        if value:
            resolved = Path(str(value)).expanduser()
            data[name] = str(resolved if resolved.is_absolute() else path.parent / resolved)
    return data


_ERRORS: dict[Any, type[ClientError]] = {
    grpc.StatusCode.UNAUTHENTICATED: ClientUnauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: ClientPermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ClientBudgetExhausted,
    grpc.StatusCode.INVALID_ARGUMENT: ClientInvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: ClientInvalidRequest,
    grpc.StatusCode.NOT_FOUND: ClientNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: ClientNotReleased,
    grpc.StatusCode.UNAVAILABLE: HubUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: HubUnavailable,
}


def client_error(exc: grpc.RpcError) -> ClientError:
    """Our exception for a gRPC error, carrying the server's one-line message."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or ""
    line = details.strip().splitlines()[0] if details.strip() else ""
    name = code.name if code is not None else "UNKNOWN"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        line = (
            "no answer from the hub in time; what was asked may still complete there: check "
            "with `sandbox jobs`, `sandbox budget` or `sandbox requests` before asking again"
        )
    if not line:
        line = f"the hub answered {name} without a message"
    return _ERRORS.get(code, ClientError)(line, name)


Resp = TypeVar("Resp")


class Connection:
    """One channel to the hub with the profile's credential; every call maps gRPC errors to
    :class:`sandbox.errors.ClientError` subclasses."""

    def __init__(self, profile: Profile, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.profile = profile
        self.timeout = timeout
        self.channel = grpc.secure_channel(profile.hub, profile.channel_credentials())
        self._metadata = profile.metadata()

    def call(self, method: Callable[..., Resp], request: Any, timeout: float | None = None) -> Resp:
        """One unary call with the profile's credential, within ``timeout`` seconds (default:
        the connection's)."""
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata or None)
        except grpc.RpcError as exc:
            raise client_error(exc) from None

    def stream(self, method: Callable[..., Iterable[Resp]], request: Any) -> Iterator[Resp]:
        """A server-streaming call without a deadline; errors map as in :meth:`call`."""
        try:
            yield from method(request, metadata=self._metadata or None)
        except grpc.RpcError as exc:
            raise client_error(exc) from None

    def close(self) -> None:
        self.channel.close()


__all__ = ["DEFAULT_PROFILE", "ENV_FIELDS", "Connection", "Profile", "client_error"]
