"""The demo's credentials: a local CA and one certificate per party, made with
``sandbox certs init`` and ``sandbox certs issue`` (as the authority would), and a
:class:`sandbox.client.Profile` for each caller."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.demo.processes import Batch, Processes, run_cli


@dataclass(frozen=True)
class Party:
    role: str
    name: str


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, party: Party) -> Path:
        return self.directory / f"{party.role}-{party.name}.pem"

    def key(self, party: Party) -> Path:
        return self.directory / f"{party.role}-{party.name}-key.pem"

    def tls_args(self, party: Party) -> list[str]:
        return [
            "--ca",
            str(self.ca),
            "--cert",
            str(self.cert(party)),
            "--key",
            str(self.key(party)),
        ]

    def profile(self, party: Party, hub: str) -> Any:
        from sandbox.client import Profile

        return Profile(
            hub=hub, ca=self.ca, cert=self.cert(party), key=self.key(party), source=party.name
        )

    def channel_credentials(self, party: Party) -> Any:
        import grpc  # type: ignore[import-untyped,unused-ignore]

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key(party).read_bytes(),
            certificate_chain=self.cert(party).read_bytes(),
        )


def make_pki(
    directory: Path, parties: list[Party], log: Path, processes: Processes
) -> tuple[Pki, Batch]:
    """``sandbox certs init``, then ``sandbox certs issue`` for every party, all at once: the
    returned :class:`Batch` is still running (``wait()`` for it)."""
    run_cli(["certs", "init", "--dir", str(directory)], log)
    issuing = processes.run(
        [["certs", "issue", p.role, p.name, "--dir", str(directory)] for p in parties], log
    )
    return Pki(directory), issuing
