"""The web app without a browser: sessions, CSRF, filters, keyset pages, the proof API, HTTPS
with the hub's certificate, and ``sandbox hub serve --web`` as a real process."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from policies import merkle
from sandbox.credentials import Principal, init_ca, issue_certificate
from sandbox.errors import HubError
from sandbox.hub.cli import serve
from sandbox.web import create_app, start_web
from sandbox.web.auth import COOKIE

from .conftest import WebState


def _client(state: WebState, key: str, secure: bool = False) -> TestClient:
    client = TestClient(create_app(state.authority, state.keys, secure=secure))
    client.post("/login", data={"api_key": key}, follow_redirects=False)
    return client


def test_the_session_cookie_is_signed_httponly_and_strict(web_state: WebState) -> None:
    client = TestClient(create_app(web_state.authority, web_state.keys, secure=True))
    reply = client.post("/login", data={"api_key": web_state.regulator}, follow_redirects=False)
    assert reply.status_code == 303
    cookie = reply.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    value = client.cookies[COOKIE]
    forged = TestClient(client.app, cookies={COOKIE: value[:-2] + "xx"})
    assert forged.get("/log", follow_redirects=False).headers["location"] == "/login"
    other = TestClient(create_app(web_state.authority, web_state.keys, secure=True))
    other.cookies.set(COOKIE, value)  # another process: another secret
    assert other.get("/log", follow_redirects=False).status_code == 303


def test_bad_keys_and_roles_are_refused(web_state: WebState) -> None:
    client = TestClient(create_app(web_state.authority, web_state.keys, secure=False))
    assert client.post("/login", data={"api_key": "sbx_nope_nope"}).status_code == 401
    assert client.post("/login", data={"api_key": web_state.firm}).status_code == 403
    assert client.get("/api/head").status_code == 401
    dept = _client(web_state, web_state.department)
    assert dept.get("/log").status_code == 403
    assert dept.get("/grants").status_code == 403
    assert _client(web_state, web_state.regulator).get("/requests").status_code == 403


def test_reviews_need_the_session_csrf_token(web_state: WebState) -> None:
    dept = _client(web_state, web_state.department)
    url = f"/requests/{web_state.request_id}/refuse"
    assert dept.post(url, data={"reason": "no"}).status_code == 403
    page = dept.get("/requests").text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert dept.post(url, data={"csrf": token, "reason": " "}).status_code == 400
    reply = dept.post(url, data={"csrf": token, "reason": "purpose too broad"})
    assert reply.status_code == 200 and f"refused {web_state.request_id}" in reply.text


def test_filters_are_checked_and_keyset_pages_cover_the_log_once(web_state: WebState) -> None:
    client = _client(web_state, web_state.regulator)
    assert client.get("/log", params={"kind": "releases"}).status_code == 400
    assert client.get("/log", params={"since": "yesterday"}).status_code == 400
    for _ in range(120):  # 50 per page: three pages
        web_state.authority.log.append("policy", {"digest": "00"})
    seen: list[int] = []
    url: str | None = "/log"
    while url is not None:
        text = client.get(url).text
        seen += [int(s.split('"', 1)[0]) for s in text.split('data-entry-index="')[1:]]
        url = (
            text.split('id="older" href="', 1)[1].split('"', 1)[0] if 'id="older"' in text else None
        )
        url = url.replace("&amp;", "&") if url else None
    size = web_state.authority.log.size
    assert seen == list(range(size - 1, -1, -1))
    releases = client.get("/log", params={"kind": "release", "firm": "acme"}).text
    assert releases.count("data-entry-index=") == 3
    purpose = client.get("/log", params={"purpose": "credit-risk-statistics"}).text
    assert purpose.count("data-entry-index=") == 1  # the access request
    everything = {"since": "2000-01-01", "until": "2100-01-01T00:00"}
    assert client.get("/log", params=everything).text.count("data-entry-index=") == 50
    future = client.get("/log", params={"since": "2100-01-01"}).text
    assert "no entries match" in future


def test_the_proof_api_matches_the_signed_head(web_state: WebState) -> None:
    client = _client(web_state, web_state.regulator)
    head = client.get("/api/head").json()
    proofs = client.get("/api/proofs", params={"indexes": "0,4", "size": head["size"]}).json()
    for p in proofs["proofs"]:
        leaf = merkle.leaf_hash(base64.b64decode(p["entry"]))
        path = [bytes.fromhex(h) for h in p["path"]]
        merkle.verify_inclusion(p["index"], head["size"], leaf, path, bytes.fromhex(head["root"]))
    budgets = client.get("/budgets", params={"dataset": "pums"}).text
    assert "G-1" in budgets and "3 releases" in budgets
    assert client.get("/budgets", params={"dataset": "nope"}).status_code == 404
    assert "G-1" in client.get("/grants").text


def test_https_with_the_hub_certificate(web_state: WebState, tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "pki")
    issue_certificate(ca, Principal("hub", "hub-1"))
    pki = tmp_path / "pki"
    app = create_app(web_state.authority, web_state.keys, secure=True)
    server = start_web(
        app, "127.0.0.1:0", certfile=pki / "hub-hub-1.pem", keyfile=pki / "hub-hub-1-key.pem"
    )
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=pki / "ca.pem")) as client:
            reply = client.get(f"https://localhost:{server.port}/login")
            assert reply.status_code == 200 and "api_key" in reply.text
            assert "default-src 'self'" in reply.headers["content-security-policy"]
    finally:
        server.stop()


def _sandbox(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *args]


def test_hub_serve_web_runs_as_a_process(web_state: WebState) -> None:
    state, keys = web_state.root / "state", web_state.root / "keys.db"
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    with pytest.raises(HubError, match="give --api-keys"):
        serve(
            state,
            None,
            [],
            ca=None,
            cert=None,
            key=None,
            listen="127.0.0.1:0",
            api_keys=None,
            api_key_listen=None,
            insecure=True,
            web="127.0.0.1:0",
        )
    with pytest.raises(HubError, match="not a loopback"):
        serve(
            state,
            None,
            [],
            ca=None,
            cert=None,
            key=None,
            listen="127.0.0.1:0",
            api_keys=keys,
            api_key_listen=None,
            insecure=True,
            web="0.0.0.0:8443",
        )
    proc = subprocess.Popen(
        _sandbox(
            "hub",
            "serve",
            "--state",
            str(state),
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--api-keys",
            str(keys),
            "--web",
            "127.0.0.1:0",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = ""
        for _ in range(5):
            line = proc.stdout.readline()
            if "web view on" in line:
                break
        assert "web view on http://127.0.0.1:" in line, line
        url = line.split("web view on ", 1)[1].strip()
        with httpx.Client(base_url=url, follow_redirects=True) as client:
            reply = client.post("/login", data={"api_key": web_state.regulator})
            assert reply.status_code == 200 and "Transparency log" in reply.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_benchmark_measures_a_small_log(tmp_path: Path) -> None:
    from benchmarks.web import build, measure
    from sandbox.credentials import ApiKeyStore

    authority = build(tmp_path / "state", 2000)
    result = measure(authority, ApiKeyStore(tmp_path / "keys.db"), repeats=1)
    assert result["entries"] == authority.log.size >= 2000
    # The target (< 300 ms at 1,000,000 entries) is the benchmark's; here only that it measures.
    assert result["requests"] == 32 and 0 < result["log_page_p95_ms"] < 10_000
