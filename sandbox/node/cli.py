"""``sandbox node``: what a department runs on its own node.

sandbox node serve --catalog DIR --authority-key PUB --state DIR     serve sandbox.v1.NodeService
                   --ca DIR_OR_CERT --cert FILE --key FILE           over mTLS (only the hub may
                   [--listen 127.0.0.1:PORT]                         call it)
sandbox node serve ... --insecure [--listen 127.0.0.1:PORT]          plaintext, loopback only
sandbox node cap DATASET --epsilon E [--delta D]                     the department's own cap on
                 --authority-key PUB --state DIR                     a dataset (deny by default)
sandbox node witness-key --state DIR                                 print the node's witness
                                                                     public key (PEM) for the
                                                                     regulators

Every failure is one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

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
) -> None:
    """Serve this node's datasets (DP releases and public metadata only) to the hub."""
    from sandbox.node.server import serve

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
