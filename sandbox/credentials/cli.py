"""``sandbox certs`` and ``sandbox keys``: what the data authority runs to make credentials.

sandbox certs init --dir DIR                             a new local CA (ca.pem, ca-key.pem)
sandbox certs issue ROLE NAME --dir DIR [--out DIR]      a certificate for hub|node|department|
                  [--host H ...] [--days N]              firm|regulator NAME, signed by the CA
sandbox keys issue ROLE NAME --store FILE [--key-file F] an API key, shown once, stored hashed
sandbox keys revoke ID --store FILE                      refuse that key from now on
sandbox keys list --store FILE [--json]                  ids, principals, dates (no secrets)

``--dir`` defaults to ``$SANDBOX_CA_DIR``, ``--store`` to ``$SANDBOX_KEY_STORE``. Every failure
is one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from sandbox.cli_support import fail, guarded

certs_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The local CA and certificates that carry a role and a name.",
)
keys_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="API keys for firms, departments and regulators (stored hashed).",
)

CaDirOpt = Annotated[
    Path,
    typer.Option("--dir", envvar="SANDBOX_CA_DIR", help="CA directory (default $SANDBOX_CA_DIR)"),
]
StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store", envvar="SANDBOX_KEY_STORE", help="API key store file ($SANDBOX_KEY_STORE)"
    ),
]
_ROLES_HELP = "hub, node, department, firm or regulator"
_T = TypeVar("_T")


def _fail(message: object) -> NoReturn:
    fail(message)


def _guard(action: Callable[[], _T]) -> _T:
    return guarded(action, "the key store")


def mount(app: typer.Typer) -> None:
    """Add ``certs`` and ``keys`` to the main ``sandbox`` app."""
    app.add_typer(certs_app, name="certs", help="The local CA and certificates (authority).")
    app.add_typer(keys_app, name="keys", help="API keys, stored hashed (authority).")


@certs_app.command("init")
def certs_init(
    directory: CaDirOpt,
    days: Annotated[int, typer.Option(help="validity of the CA certificate in days")] = 3650,
) -> None:
    """Make a new local CA in DIR (0700): ca.pem for everyone, ca-key.pem (0600) kept private."""
    from sandbox.credentials.ca import init_ca

    ca = _guard(lambda: init_ca(directory, days=days))
    typer.echo(f"CA created in {ca.directory}")
    typer.echo(f"  {ca.cert_path}  give this to every party: it is the root they trust")
    typer.echo(f"  {ca.directory / 'ca-key.pem'}  keep private (mode 0600)")


@certs_app.command("issue")
def certs_issue(
    role: Annotated[str, typer.Argument(help=_ROLES_HELP)],
    name: Annotated[str, typer.Argument(help="who: a node, department, firm or regulator name")],
    directory: CaDirOpt,
    out: Annotated[
        Path | None, typer.Option("--out", help="where to write the files (default: --dir)")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="DNS name or IP a hub/node serves on (repeat; default localhost)"
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="validity in days")] = 365,
) -> None:
    """Issue a certificate for ROLE NAME signed by the CA in DIR."""
    from sandbox.credentials.ca import issue_certificate, load_ca
    from sandbox.credentials.identity import Principal, check_role

    def run() -> tuple[Path, Path, Path]:
        ca = load_ca(directory)
        issued = issue_certificate(
            ca, Principal(check_role(role), name), out_dir=out, hosts=host or None, days=days
        )
        return issued.cert_path, issued.key_path, issued.ca_path

    cert_path, key_path, ca_path = _guard(run)
    typer.echo(f"certificate for {role} {name!r}")
    typer.echo(f"  {cert_path}")
    typer.echo(f"  {key_path}  private key (mode 0600): give it to {name} only")
    typer.echo(f"  {ca_path}  the CA certificate to trust")


@keys_app.command("issue")
def keys_issue(
    role: Annotated[str, typer.Argument(help="department, firm or regulator")],
    name: Annotated[str, typer.Argument(help="the department, firm or regulator name")],
    store: StoreOpt,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="write the key to this new file (0600) instead of stdout"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Issue an API key for ROLE NAME; it is shown once and only its hash is stored."""
    from sandbox.credentials.apikeys import issue_api_key, key_id

    if key_file is not None and (key_file.exists() or key_file.is_symlink()):
        _fail(f"{key_file} already exists; it is never overwritten: choose another --key-file")
    key = _guard(lambda: issue_api_key(store, role, name))
    kid = key_id(key)
    if key_file is not None:

        def write() -> None:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key + "\n")

        try:
            _guard(write)
        except typer.Exit:
            _guard(lambda: _revoke(store, kid))  # a key nobody received must not stay valid
            raise
    if as_json:
        doc = {"id": kid, "role": role, "name": name}
        doc |= {"key_file": str(key_file)} if key_file is not None else {"key": key}
        typer.echo(json.dumps(doc, ensure_ascii=False))
    elif key_file is not None:
        typer.echo(f"API key {kid} for {role} {name!r} written to {key_file} (mode 0600)")
    else:
        typer.echo(f"API key {kid} for {role} {name!r} (shown once; only its hash is stored):")
        typer.echo(key)


def _revoke(store: Path, kid: str) -> None:
    from sandbox.credentials.apikeys import revoke_api_key

    revoke_api_key(store, kid)


@keys_app.command("revoke")
def keys_revoke(
    kid: Annotated[str, typer.Argument(metavar="ID", help="the key id (sbx_<ID>_...)")],
    store: StoreOpt,
) -> None:
    """Revoke an API key by its id; it is refused from the next call on."""
    _guard(lambda: _revoke(store, kid))
    typer.echo(f"API key {kid} revoked")


@keys_app.command("list")
def keys_list(
    store: StoreOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the stored API keys: id, role, name, created, revoked (never a secret)."""
    from sandbox.credentials.apikeys import ApiKeyStore
    from sandbox.tables import render

    if not store.exists():
        _fail(f"no key store at {store}; issue a key with `sandbox keys issue --store {store}`")
    entries = _guard(lambda: ApiKeyStore(store).entries())
    if as_json:
        rows = [
            {
                "id": e.key_id,
                "role": e.principal.role,
                "name": e.principal.name,
                "created_at": e.created_at,
                "revoked_at": e.revoked_at,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not entries:
        typer.echo("no API keys")
        return
    header = ["id", "role", "name", "created", "revoked"]
    body = [
        [e.key_id, e.principal.role, e.principal.name, e.created_at, e.revoked_at or ""]
        for e in entries
    ]
    typer.echo(render(header, body, right=[False] * 5))
