"""The web view's FastAPI app: the regulator's read-only pages and the department's reviews.

``create_app(authority, api_keys, secure=...)`` builds it over the hub's own
:class:`~policies.Authority` (and so the hub's shared access workflow,
:func:`sandbox.hub.access.workflow_for`); :func:`start_web` serves it with uvicorn in a thread
beside the gRPC ports. Every page carries the integrity banner, which ``static/integrity.js``
fills by checking, in the browser with WebCrypto, the signed tree head, the inclusion of every
entry on the page and the consistency with the head this browser saw last.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from policies.authority import Authority
from policies.entries import ENTRY_KINDS
from policies.errors import PolicyError
from policies.keys import key_id
from policies.treehead import SignedTreeHead
from policies.workflow import AccessRequest
from sandbox.credentials import ApiKeyStore
from sandbox.errors import SandboxError
from sandbox.hub.access import workflow_for
from sandbox.web import queries
from sandbox.web.auth import COOKIE, WEB_ROLES, Session, Sessions, csrf_ok

if TYPE_CHECKING:
    from sandbox.hub.witnesses import HubWitnesses

HERE = Path(__file__).parent
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
)
MAX_PROOFS = 100


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    authority: Authority,
    api_keys: ApiKeyStore,
    *,
    secure: bool,
    witnesses: HubWitnesses | None = None,
) -> FastAPI:
    """The web view over ``authority``; ``secure``: served over TLS (cookies marked Secure).
    With ``witnesses`` (the hub's), the head the banner checks comes with the department
    nodes' cosignatures and the witness keys the nodes reported; the browser verifies each
    and pins the keys it saw first."""
    queries.ensure_indexes(authority)
    sessions = Sessions()
    workflow = workflow_for(authority)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    public_raw = authority.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith("/static"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def session_of(request: Request, *roles: str) -> Session:
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None:
            raise _Refused(401, "log in with your API key")
        if roles and session.role not in roles:
            raise _Refused(
                403, f"this page is for the {' or '.join(roles)}; you are {session.role}"
            )
        return session

    def page(request: Request, name: str, session: Session | None, **context: Any) -> Response:
        context.update(
            session=session,
            key_hex=public_raw.hex(),
            key_id=key_id(authority.public_key),
        )
        return templates.TemplateResponse(request, name, context)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        if exc.status == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse("/login", status_code=303)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        session = sessions.read(request.cookies.get(COOKIE))
        response = page(request, "error.html", session, message=str(exc))
        response.status_code = exc.status
        return response

    async def form_of(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    # -- login ----------------------------------------------------------------------------

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return page(request, "login.html", None, message=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        presented = (await form_of(request)).get("api_key", "").strip()
        try:
            who = api_keys.authenticate(presented)
        except (SandboxError, ValueError, IndexError):
            response = page(
                request, "login.html", None, message="unknown or revoked API key; check it"
            )
            response.status_code = 401
            return response
        if who.role not in WEB_ROLES:
            raise _Refused(
                403, f"{who.role} keys cannot open the web view; use a regulator or department key"
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(who.role, who.name),
            max_age=sessions.lifetime_s,
            httponly=True,
            secure=secure,
            samesite="strict",
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)
        if not csrf_ok(session, (await form_of(request)).get("csrf")):
            raise _Refused(403, "stale form; reload the page and try again")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    def home(request: Request) -> Response:
        session = session_of(request)
        return RedirectResponse("/log" if session.role == "regulator" else "/requests", 303)

    # -- regulator ------------------------------------------------------------------------

    @app.get("/log")
    def log(request: Request) -> Response:
        session = session_of(request, "regulator")
        params = dict(request.query_params)
        try:
            filters = queries.LogFilter.parse(params)
            before = int(params["before"]) if params.get("before") else None
        except (PolicyError, ValueError) as exc:
            raise _Refused(400, str(exc)) from None
        result = queries.log_page(authority.db.conn(), filters, before)
        more = None
        if result.next_before is not None:
            more = "/log?" + urlencode({**filters.query(), "before": result.next_before})
        name = "log_rows.html" if request.headers.get("HX-Request") else "log.html"
        return page(
            request,
            name,
            session,
            rows=result.rows,
            more=more,
            filters=filters.query(),
            kinds=sorted(ENTRY_KINDS),
            decisions=queries.DECISIONS,
        )

    @app.get("/entry/{index}")
    def entry(request: Request, index: int) -> Response:
        session = session_of(request, "regulator")
        head = queries.latest_head(authority)
        if not 0 <= index < head.size:
            raise _Refused(404, f"the log has no entry {index} (size {head.size})")
        data = authority.log.entry(index)
        path = authority.log.inclusion_proof(index, head.size)
        return page(
            request,
            "entry.html",
            session,
            index=index,
            body=queries.entry_summary(data),
            text=data.decode("utf-8", "replace"),
            path=[p.hex() for p in path],
            head=head,
        )

    @app.get("/budgets")
    def budgets(request: Request) -> Response:
        session = session_of(request, "regulator")
        policies = sorted(authority.registry.datasets(), key=lambda p: p.dataset_id)
        names = [p.dataset_id for p in policies]
        chosen = request.query_params.get("dataset") or (names[0] if names else None)
        if chosen is not None and chosen not in names:
            raise _Refused(404, f"no dataset {chosen!r}; choose one of the list")
        series = queries.spend_series(authority.db.conn(), chosen) if chosen else {}
        points = [
            {"grant": grant or "all grants", "time": p.ts_ms, "epsilon": p.epsilon}
            for grant, pts in series.items()
            for p in pts
        ]
        grants = []
        for grant in authority.registry.grants():
            if chosen in grant.datasets:
                left = authority.remaining(grant.grant_id, chosen)
                grants.append(
                    {
                        "grant_id": grant.grant_id,
                        "firm": grant.firm,
                        "purpose": grant.purpose,
                        "epsilon_left": left.epsilon,
                        "delta_left": left.delta,
                        "uses": len(series.get(grant.grant_id, [])),
                        "spent": series[grant.grant_id][-1].epsilon
                        if grant.grant_id in series
                        else 0.0,
                    }
                )
        spec = {
            "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
            "width": 640,
            "height": 260,
            "data": {"values": points},
            "mark": {"type": "line", "interpolate": "step-after", "point": True},
            "encoding": {
                "x": {"field": "time", "type": "temporal", "title": "time"},
                "y": {"field": "epsilon", "type": "quantitative", "title": "ε spent (cumulative)"},
                "color": {"field": "grant", "type": "nominal"},
            },
        }
        return page(
            request,
            "budgets.html",
            session,
            names=names,
            chosen=chosen,
            grants=grants,
            uses=len(series.get("", [])),
            spec=spec,
        )

    @app.get("/grants")
    def grants(request: Request) -> Response:
        session = session_of(request, "regulator")
        found, unreadable = authority.registry.grant_records()
        kinds = ("grant", "revocation", "access_request", "access_review", "access_outcome")
        return page(
            request,
            "grants.html",
            session,
            grants=sorted(found, key=lambda g: g.grant_id),
            unreadable=unreadable,
            history=queries.history(authority.db.conn(), kinds),
            rules=authority.engine.rules,
            policy_digest=authority.engine.policy_digest,
        )

    # -- department -----------------------------------------------------------------------

    def pending_page(request: Request, session: Session, message: str | None) -> Response:
        waiting: list[AccessRequest] = workflow.pending(session.name)
        return page(request, "requests.html", session, requests=waiting, message=message)

    @app.get("/requests")
    def requests(request: Request) -> Response:
        return pending_page(request, session_of(request, "department"), None)

    @app.post("/requests/{request_id}/{verb}")
    async def review(request: Request, request_id: str, verb: str) -> Response:
        session = session_of(request, "department")
        form = await form_of(request)
        if not csrf_ok(session, form.get("csrf")):
            raise _Refused(403, "stale form; reload the page and try again")
        try:
            if verb == "approve":
                workflow.approve(request_id, session.name, note=form.get("note", ""))
                message = f"approved {request_id}"
            elif verb == "refuse":
                reason = form.get("reason", "").strip()
                if not reason:
                    raise _Refused(400, "give the reason the firm will read")
                workflow.refuse(request_id, session.name, reason)
                message = f"refused {request_id}"
            else:
                raise _Refused(404, "use approve or refuse")
        except (PolicyError, SandboxError) as exc:
            raise _Refused(400, str(exc)) from None
        return pending_page(request, session, message)

    # -- what the browser checks ----------------------------------------------------------

    @app.get("/api/head")
    def head(request: Request) -> dict[str, Any]:
        session_of(request)
        sth = queries.latest_head(authority)
        return {**sth.to_json(), "public_key": public_raw.hex(), "cosignatures": cosigned(sth)}

    def cosigned(sth: SignedTreeHead) -> list[dict[str, Any]]:
        if witnesses is None:
            return []
        found = witnesses.cosignatures(sth) or witnesses.collect(sth)
        out = []
        for cos in found:
            key = witnesses.witness_key(cos.witness)
            if key is not None:
                raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
                out.append({**cos.to_json(), "public_key": raw})
        return out

    @app.get("/api/proofs")
    def proofs(request: Request, indexes: str, size: int) -> dict[str, Any]:
        session_of(request)
        try:
            wanted = [int(i) for i in indexes.split(",") if i][:MAX_PROOFS]
            out = [
                {
                    "index": i,
                    "entry": base64.b64encode(authority.log.entry(i)).decode(),
                    "path": [p.hex() for p in authority.log.inclusion_proof(i, size)],
                }
                for i in wanted
            ]
        except (PolicyError, ValueError) as exc:
            raise _Refused(400, str(exc)) from None
        return {"size": size, "proofs": out}

    @app.get("/api/consistency")
    def consistency(request: Request, first: int, second: int) -> dict[str, Any]:
        session_of(request)
        try:
            path = authority.log.consistency_proof(first, second)
        except (PolicyError, ValueError) as exc:
            raise _Refused(400, str(exc)) from None
        return {"first": first, "second": second, "path": [p.hex() for p in path]}

    return app


@dataclass
class WebServer:
    """The web view running in a thread (``port``: the bound port)."""

    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_web(
    app: FastAPI, address: str, *, certfile: Path | None = None, keyfile: Path | None = None
) -> WebServer:
    """Serve ``app`` on ``address`` (``HOST:PORT``; TLS when ``certfile``) and return once up."""
    import uvicorn

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError):
        sock.close()
        raise SandboxError(
            f"cannot serve the web view on {address}; choose another --web HOST:PORT"
        ) from None
    config = uvicorn.Config(  # no websockets: plain HTTP pages
        app,
        log_level="warning",
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        lifespan="off",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="web", daemon=True
    )
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise SandboxError(f"the web view did not start on {address}; see the log above")
    return WebServer(int(sock.getsockname()[1]), server, thread)
