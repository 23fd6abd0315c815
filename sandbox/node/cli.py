"""``sandbox node``: what a department runs on its own node.

sandbox node serve --catalog DIR --authority-key PUB --state DIR     serve sandbox.v1.NodeService
                   --ca DIR_OR_CERT --cert FILE --key FILE           over mTLS (only the hub may
                   [--listen 127.0.0.1:PORT]                         call it)
                   [--separator CHAR]                                the catalog's CSV separator
sandbox node serve ... --insecure [--listen 127.0.0.1:PORT]          plaintext, loopback only
sandbox node cap DATASET --epsilon E [--delta D]                     the department's own cap on
                 --authority-key PUB --state DIR                     a dataset (deny by default)
sandbox node serve ... --flower-superlink HOST:PORT              also one Flower SuperNode per
                                                                     dataset (keys in
                                                                     STATE/flower/keys), TLS
                                                                     pinned to --ca
sandbox node flower-key --catalog DIR --state DIR                    print each dataset's
                                                                     SuperNode public key (the
                                                                     hub gets it at dataset
                                                                     registration)
sandbox node witness-key --state DIR                                 print the node's witness
                                                                     public key (PEM) for the
                                                                     regulators

``serve`` sends Flower's output to ``STATE/logs/flower.log``. Every failure is one ``error:``
line on stderr and exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from sandbox.cli_support import fail, guarded

node_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="A department node: serve its datasets to the hub, set its own caps.",
)

_T = TypeVar("_T")

StateOpt = Annotated[
    Path, typer.Option("--state", help="the node's state directory (its guard.db)")
]
AuthorityOpt = Annotated[
    Path,
    typer.Option("--authority-key", help="the authority's Ed25519 public key (PEM)"),
]


def _fail(message: object) -> NoReturn:
    fail(message)


def _guard(action: Callable[[], _T]) -> _T:
    return guarded(action, "the node's store (check --state)")


@node_app.command("serve")
def node_serve(
    catalog: Annotated[Path, typer.Option("--catalog", help="the node's catalog directory")],
    authority_key: AuthorityOpt,
    state: StateOpt,
    ca: Annotated[
        Path | None, typer.Option("--ca", help="the CA directory or its ca.pem (TLS)")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="this node's certificate (role node)")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="this node's private key")] = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on")
    ] = "127.0.0.1:7070",
    insecure: Annotated[
        bool, typer.Option("--insecure", help="plaintext, allowed on loopback only")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="the node's name with --insecure")
    ] = None,
    flower_superlink: Annotated[
        str | None,
        typer.Option(
            "--flower-superlink", help="HOST:PORT of the hub's Flower SuperLink (SuperNodes)"
        ),
    ] = None,
    separator: Annotated[
        str | None,
        typer.Option(
            "--separator",
            help="the separator of every CSV file of the catalog (one character, or tab), "
            "instead of the manifest's or the detected one",
        ),
    ] = None,
) -> None:
    """Serve this node's datasets (DP releases and public metadata only) to the hub."""
    from policies.db import private_dir
    from sandbox.cli_support import send_flower_output
    from sandbox.node.server import serve

    if separator is not None:  # for this process and the SuperNodes it starts
        from sandbox.catalog import SEPARATOR_ENV, check_separator

        os.environ[SEPARATOR_ENV] = _guard(lambda: check_separator(separator))

    # the ClientApp's Flower lines (RunTask) go to STATE/logs/flower.log, not the terminal
    _guard(lambda: send_flower_output(private_dir(state) / "logs" / "flower.log"))
    supernodes = None
    if flower_superlink is not None:
        supernodes = _guard(
            lambda: _start_supernodes(catalog, authority_key, state, ca, flower_superlink)
        )
    try:
        _guard(
            lambda: serve(
                catalog,
                authority_key,
                state,
                echo=typer.echo,
                listen=listen,
                ca=ca,
                cert=cert,
                key=key,
                insecure=insecure,
                name=name,
            )
        )
    finally:
        if supernodes is not None:
            supernodes.stop()


def _start_supernodes(
    catalog: Path, authority_key: Path, state: Path, ca: Path | None, superlink: str
) -> Any:
    """One SuperNode per dataset of the catalog, connected to the hub's SuperLink."""
    from sandbox.catalog import load_catalog
    from sandbox.deployment.processes import DeploymentError
    from sandbox.deployment.serve import start_supernodes
    from sandbox.errors import NodeServiceError

    if ca is None:
        _fail("--flower-superlink pins the sandbox CA: give --ca")
    datasets = sorted(m.name for m in load_catalog(catalog))
    try:
        started = start_supernodes(state, catalog, authority_key, ca, superlink, datasets)
    except DeploymentError as exc:
        raise NodeServiceError(f"the SuperNodes did not start: {exc}") from None
    typer.echo(f"SuperNodes for {', '.join(datasets)} connecting to {superlink}")
    return started


@node_app.command("flower-key")
def node_flower_key(
    catalog: Annotated[Path, typer.Option("--catalog", help="the node's catalog directory")],
    state: StateOpt,
) -> None:
    """Print each dataset's SuperNode public key (made at first use) as DATASET=KEY lines. The
    hub registers them itself when the datasets are registered (``ReportMetadata``); a hub
    operator may still give one with ``sandbox hub serve --flower --flower-node DATASET=FILE``."""
    from sandbox.catalog import load_catalog
    from sandbox.deployment.processes import node_key

    def keys() -> list[str]:
        names = sorted(m.name for m in load_catalog(catalog))
        return [f"{n}={node_key(state, n)[1].read_text(encoding='utf-8').strip()}" for n in names]

    for line in _guard(keys):
        typer.echo(line)


@node_app.command("cap")
def node_cap(
    dataset: Annotated[str, typer.Argument(help="the dataset, as named in its manifest")],
    epsilon: Annotated[float, typer.Option("--epsilon", help="total epsilon over all grants")],
    authority_key: AuthorityOpt,
    state: StateOpt,
    delta: Annotated[float, typer.Option("--delta", help="total delta over all grants")] = 0.0,
) -> None:
    """Set the most this node will ever spend on DATASET over all grants (rounded down)."""
    from policies.keys import load_public_key
    from sandbox.node_guard import NodeGuard

    def run() -> tuple[float, float, float, float]:
        guard = NodeGuard(state, load_public_key(authority_key))
        guard.set_dataset_cap(dataset, epsilon=epsilon, delta=delta)
        cap = guard.dataset_cap(dataset)
        spent = guard.dataset_spent(dataset)
        assert cap is not None
        return cap.epsilon / 1e6, cap.delta / 1e15, spent.epsilon / 1e6, spent.delta / 1e15

    cap_eps, cap_dlt, spent_eps, spent_dlt = _guard(run)
    typer.echo(
        f"cap on {dataset}: epsilon {cap_eps:g}, delta {cap_dlt:g} "
        f"(spent so far: epsilon {spent_eps:g}, delta {spent_dlt:g})"
    )


@node_app.command("witness-key")
def node_witness_key(state: StateOpt) -> None:
    """Print this node's witness public key (PEM): hand it to the regulators, who require
    its cosignature on the log's tree heads (the node creates it at first start)."""
    from sandbox.node.witness import witness_public_pem

    typer.echo(_guard(lambda: witness_public_pem(state)), nl=False)
