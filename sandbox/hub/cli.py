"""``sandbox hub``: run the hub (数据主管部门) as a gRPC server.

sandbox hub serve --state DIR --ca DIR_OR_CERT                   FirmService, RegulatorService,
                  --cert FILE --key FILE --listen HOST:PORT      DepartmentService over mTLS
                  [--catalog DIR --route DATASET=HOST:PORT ...]  (registered datasets are
                  [--api-keys FILE --api-key-listen HOST:PORT]    served from <state>/routes.db;
                                                                  --route overrides or adds one,
                                                                  DATASET=NODE@HOST:PORT names
                                                                  the node)
sandbox hub serve ... --insecure [--listen 127.0.0.1:PORT]       plaintext, API keys, loopback
sandbox hub serve ... --api-keys FILE --web HOST:PORT            also the web view (HTTPS with
                                                                  the hub's certificate; plain
                                                                  HTTP with --insecure)
sandbox hub serve ... --flower [--flower-listen HOST:PORT]       also a Flower SuperLink (TLS
                  [--flower-node DATASET=FILE ...]                from the CA directory; the
                                                                  SuperNode keys stored at
                                                                  dataset registration and
                                                                  --flower-node ones registered):
                                                                  training jobs run over it

Flower's output (the training jobs' ServerApp) goes to ``STATE/logs/flower.log``, not the
terminal. It blocks until SIGINT or SIGTERM. Every failure is one ``error:`` line on stderr,
exit code 2.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from sandbox.cli_support import fail, guarded, send_flower_output
from sandbox.errors import HubError

if TYPE_CHECKING:
    from sandbox.hub.nodes import NodeRoute

hub_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The hub: serve firms, departments and regulators over the sandbox.v1 API.",
)

_T = TypeVar("_T")


def _fail(message: object) -> NoReturn:
    fail(message)


def _guard(action: Callable[[], _T]) -> _T:
    return guarded(action, "the hub's state (check --state)")


def parse_routes(routes: list[str]) -> dict[str, NodeRoute]:
    """``DATASET=HOST:PORT`` or ``DATASET=NODE@HOST:PORT`` (the node's name defaults to HOST).

    >>> parse_routes(["pums=node-1@10.0.0.7:7070"])["pums"]
    NodeRoute(name='node-1', address='10.0.0.7:7070')
    """
    from sandbox.hub.nodes import NodeRoute

    out: dict[str, NodeRoute] = {}
    for item in routes:
        dataset, _, target = item.partition("=")
        name, _, address = target.rpartition("@")
        host, _, port = address.rpartition(":")
        if not dataset or not host or not port.isdigit():
            raise HubError(f"--route {item!r}: write DATASET=HOST:PORT (or DATASET=NODE@HOST:PORT)")
        if dataset in out:
            raise HubError(f"--route names dataset {dataset!r} twice; give one node per dataset")
        out[dataset] = NodeRoute(name or host.strip("[]"), address)
    return out


@hub_app.command("serve")
def hub_serve(
    state: Annotated[Path, typer.Option("--state", help="the authority's state directory")],
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="manifests served besides the registered datasets"),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option("--ca", help="the CA directory or its ca.pem (TLS)")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="the hub's certificate (role hub)")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="the hub's private key")] = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT of the mTLS port")
    ] = "127.0.0.1:50051",
    route: Annotated[
        list[str] | None,
        typer.Option("--route", help="DATASET=HOST:PORT of the node holding it (repeat)"),
    ] = None,
    api_keys: Annotated[
        Path | None, typer.Option("--api-keys", help="the API key store (keys.db)")
    ] = None,
    api_key_listen: Annotated[
        str | None, typer.Option("--api-key-listen", help="HOST:PORT of the API-key port")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="plaintext, API keys only, loopback only")
    ] = False,
    web: Annotated[
        str | None,
        typer.Option("--web", help="HOST:PORT of the web view (regulators, departments)"),
    ] = None,
    flower: Annotated[
        bool,
        typer.Option("--flower", help="run training jobs over a Flower SuperLink beside the hub"),
    ] = False,
    flower_listen: Annotated[
        str, typer.Option("--flower-listen", help="HOST:PORT of the SuperLink")
    ] = "127.0.0.1:9092",
    flower_node: Annotated[
        list[str] | None,
        typer.Option("--flower-node", help="DATASET=FILE: a SuperNode's public key (repeat)"),
    ] = None,
) -> None:
    """Serve the hub until SIGINT or SIGTERM."""
    _guard(
        lambda: serve(
            state,
            catalog,
            route or [],
            ca=ca,
            cert=cert,
            key=key,
            listen=listen,
            api_keys=api_keys,
            api_key_listen=api_key_listen,
            insecure=insecure,
            web=web,
            flower=flower_listen if flower else None,
            flower_nodes=flower_node or [],
        )
    )


def serve(
    state: Path,
    catalog: Path | None,
    routes: list[str],
    *,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    listen: str,
    api_keys: Path | None,
    api_key_listen: str | None,
    insecure: bool,
    echo: Callable[[str], None] = typer.echo,
    web: str | None = None,
    flower: str | None = None,
    flower_nodes: list[str] | None = None,
) -> None:
    """Check the options, start the hub (:func:`sandbox.hub.start`) and block until a signal."""
    from sandbox.hub.server import HubTLS, is_loopback, start

    if insecure:  # refused before anything is opened or created
        bad = [a for a in (listen, api_key_listen, web) if a is not None and not is_loopback(a)]
        if bad:
            raise HubError(
                f"--insecure serves plaintext, so only on loopback; {bad[0]} is not a loopback "
                "address (use 127.0.0.1, or drop --insecure and give --ca/--cert/--key)"
            )
        if ca or cert or key:
            raise HubError("--insecure serves plaintext: drop --ca/--cert/--key, or --insecure")
        tls = None
    else:
        if ca is None or cert is None or key is None:
            raise HubError("give --ca, --cert and --key (the hub's, role hub), or --insecure")
        tls = HubTLS.from_files(cert, key, ca / "ca.pem" if ca.is_dir() else ca)
    if (api_keys is None) != (api_key_listen is None) and not insecure:
        raise HubError("--api-keys and --api-key-listen go together; give both or neither")
    if web is not None and api_keys is None:
        raise HubError("--web logs people in with API keys: give --api-keys FILE too")
    table = parse_routes(routes)
    if flower is not None and (insecure or ca is None):
        raise HubError("--flower runs the SuperLink with TLS from the CA: give --ca DIR")

    from policies.authority import Authority
    from sandbox.catalog import Catalog, load_catalog
    from sandbox.credentials import ApiKeyStore
    from sandbox.hub.routes import RouteStore

    manifests = Catalog({}, state) if catalog is None else load_catalog(catalog)
    registered = {r.dataset for r in RouteStore(state).all()} if state.is_dir() else set()
    unknown = sorted(set(table) - {m.name for m in manifests} - registered)
    if unknown:
        raise HubError(
            f"--route names {unknown[0]!r}, which is neither in --catalog nor registered; "
            "register it (RegisterDataset) or give its manifest with --catalog"
        )
    authority = Authority(state)
    send_flower_output(state / "logs" / "flower.log")  # the jobs' Flower lines, not the terminal
    hub = start(
        authority,
        manifests,
        table,
        tls=tls,
        address=listen,
        api_key_address=None if insecure else api_key_listen,
        api_keys=None if api_keys is None else ApiKeyStore(api_keys),
        insecure=insecure,
    )
    host = listen.rsplit(":", 1)[0]
    transport = "plaintext, API keys, loopback" if insecure else "mTLS"
    extra = f"; API keys on port {hub.api_key_port}" if hub.api_key_port else ""
    echo(
        f"hub serving sandbox.v1 on {host}:{hub.port} ({transport}){extra}; datasets: "
        f"{', '.join(sorted(table)) or 'none'}"
    )
    site = None
    if web is not None:
        assert api_keys is not None
        from sandbox.web import create_app, start_web

        app = create_app(
            authority, ApiKeyStore(api_keys), secure=not insecure, witnesses=hub.witnesses
        )
        try:
            site = start_web(app, web, certfile=cert, keyfile=key)
        except BaseException:
            hub.stop()
            raise
        scheme = "http" if insecure else "https"
        echo(f"web view on {scheme}://{web.rsplit(':', 1)[0]}:{site.port}/")
    superlink = None
    if flower is not None:
        assert ca is not None
        from sandbox.deployment.processes import DeploymentError
        from sandbox.deployment.serve import parse_node_keys, start_superlink, stored_node_keys
        from sandbox.hub.jobs import HubJobs

        try:
            if not isinstance(hub.firm.jobs, HubJobs):
                raise DeploymentError("this hub runs no training jobs")
            overrides = parse_node_keys(flower_nodes or [])
            superlink = start_superlink(state, ca, flower, overrides)
            hub.firm.jobs.flower = superlink
            # A dataset registered while the SuperLink was starting has its key stored only.
            for dataset, public in stored_node_keys(state).items():
                if dataset not in overrides and superlink.registered.get(dataset) != (
                    public.read_bytes()
                ):
                    superlink.register_key(dataset, public)
        except BaseException as exc:
            hub.stop()
            if site is not None:
                site.stop()
            if isinstance(exc, DeploymentError):
                raise HubError(f"the Flower SuperLink did not start: {exc}") from None
            raise
        echo(
            f"Flower SuperLink on {flower} (TLS, SuperNode authentication, "
            f"{len({**stored_node_keys(state), **overrides})} SuperNode key(s)); training jobs "
            "run over it"
        )
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=hub.stop, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
    hub.wait()
    if superlink is not None:
        superlink.stop()
    if site is not None:
        site.stop()
    echo("hub stopped")
