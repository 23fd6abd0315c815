"""The web view in a real Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) against
the app served by uvicorn on loopback over a real authority state."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.web import WebServer, create_app, start_web

from .conftest import WebState, build_state

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (make chromium installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _serve(state: WebState) -> WebServer:
    return start_web(create_app(state.authority, state.keys, secure=False), "127.0.0.1:0")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebState, str]]:
    state = build_state(tmp_path_factory.mktemp("web"))
    server = _serve(state)
    try:
        yield state, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _login(browser: Any, url: str, key: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{url}/login")
    page.fill("#api_key", key)
    # Wait for the page the login leads to: its URL changes before its document has loaded,
    # and a count taken in between sees none of its rows.
    with page.expect_navigation(wait_until="load"):
        page.click("#login")
    return page


def _banner(page: Any) -> str:
    page.wait_for_selector("#integrity[data-state]", timeout=10_000)
    return str(page.get_attribute("#integrity", "data-state"))


def test_the_log_page_lists_entries_and_the_browser_proves_them(
    browser: Any, site: tuple[WebState, str]
) -> None:
    state, url = site
    page = _login(browser, url, state.regulator)
    assert page.url.endswith("/log")
    rows = page.locator("tr[data-entry-index]")
    assert rows.count() == state.authority.log.size
    assert _banner(page) == "ok", page.inner_text("#integrity")
    assert page.locator("tr[data-proof='ok']").count() == rows.count()
    assert "signature valid" in page.inner_text("#integrity-detail")
    # the entry page checks its own inclusion proof against the signed head
    page.click("a[href='/entry/3']")
    assert _banner(page) == "ok"
    assert page.inner_text("#proof-status") == "✓ included"


def test_a_filter_narrows_the_table(browser: Any, site: tuple[WebState, str]) -> None:
    state, url = site
    page = _login(browser, url, state.regulator)
    page.select_option("select[name=kind]", "release")
    page.click("#apply")
    page.wait_for_function(
        "document.querySelectorAll('tr[data-entry-index]').length === 3", timeout=10_000
    )
    kinds = page.locator("tr[data-entry-index] td:nth-child(3)").all_inner_texts()
    assert kinds == ["release"] * 3
    assert "kind=release" in page.url
    page.wait_for_selector("tr[data-proof='ok']")
    assert _banner(page) == "ok"


def test_a_firm_key_cannot_open_the_regulator_pages(
    browser: Any, site: tuple[WebState, str]
) -> None:
    state, url = site
    page = _login(browser, url, state.firm)
    assert "firm keys cannot open the web view" in page.inner_text("#error")
    page.goto(f"{url}/log")
    assert page.url.endswith("/login")
    # a department is logged in but is not a regulator
    page = _login(browser, url, state.department)
    response = page.goto(f"{url}/log")
    assert response is not None and response.status == 403


def test_a_department_approves_a_request_from_the_browser(
    browser: Any, site: tuple[WebState, str]
) -> None:
    state, url = site
    page = _login(browser, url, state.department)
    assert page.url.endswith("/requests")
    section = page.locator(f"#request-{state.request_id}")
    section.locator("input[name=note]").fill("fine for statistics")
    section.locator("button.approve").click()
    assert f"approved {state.request_id}" in page.inner_text("#message")
    assert page.locator(f"#request-{state.request_id}").count() == 0
    from sandbox.hub.access import workflow_for

    done = workflow_for(state.authority).get(state.request_id)
    assert done.grant_id is not None  # the only reviewer approved: the grant is issued


def test_an_edited_entry_turns_the_banner_red(browser: Any, tmp_path: Path) -> None:
    state = build_state(tmp_path)
    server = _serve(state)
    try:
        page = _login(browser, f"http://127.0.0.1:{server.port}", state.regulator)
        assert _banner(page) == "ok"
        with sqlite3.connect(state.root / "state" / "state.db") as db:
            db.execute(
                "UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), "
                "'\"epsilon\":0.5', '\"epsilon\":0.1') AS BLOB) WHERE kind = 'release'"
            )
        page.reload()
        assert _banner(page) == "bad"
        assert "does not match the signed tree head" in page.inner_text("#integrity-status")
        assert page.locator("tr[data-proof='bad']").count() == 3
    finally:
        server.stop()


def test_the_banner_checks_consistency_with_the_head_seen_before(
    browser: Any, site: tuple[WebState, str]
) -> None:
    state, url = site
    page = _login(browser, url, state.regulator)
    assert _banner(page) == "ok"  # this browser now remembers the head
    seen = state.authority.log.size
    for _ in range(5):
        state.authority.log.append("policy", {"digest": "00"})
    page.reload()
    assert _banner(page) == "ok", page.inner_text("#integrity")
    assert f"consistent with the head seen before (size {seen}): yes" in page.inner_text(
        "#integrity-detail"
    )
    # a head this log does not extend (a fork), then a longer one (a truncation)
    fake = "JSON.stringify({size: %d, root: 'ab'.repeat(32)})"
    page.evaluate(f"localStorage.setItem('sbx-last-head', {fake % 3})")
    page.reload()
    assert _banner(page) == "bad"
    assert "forked or rewritten" in page.inner_text("#integrity-status")
    page.evaluate(f"localStorage.setItem('sbx-last-head', {fake % 10_000})")
    page.reload()
    assert _banner(page) == "bad" and "the log shrank" in page.inner_text("#integrity-status")


class _Witnesses:
    """The hub's witness interface the web view uses, over two real ``policies.witness``
    witnesses in this process (the gRPC path to nodes is tested in tests/witness)."""

    def __init__(self, root: Path, authority: Any) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from policies.witness import Witness

        self.authority = authority
        self.nodes = [
            Witness(root / f"{n}.db", n, Ed25519PrivateKey.generate())
            for n in ("jinan-node", "qingdao-node")
        ]
        self.forged: str | None = None

    def cosignatures(self, head: Any) -> list[Any]:
        return []

    def collect(self, head: Any) -> list[Any]:
        import dataclasses

        got = []
        for w in self.nodes:
            last = w.last(head.key_id)
            since = 0 if last is None else last[0].size
            proof = self.authority.log.consistency_proof(since, head.size) if since else []
            cos = w.witness(head, proof, self.authority.public_key, 1)
            if cos.witness == self.forged:
                cos = dataclasses.replace(cos, timestamp_ms=cos.timestamp_ms + 1)
            got.append(cos)
        return got

    def witness_key(self, name: str) -> Any:
        return next(w.public_key for w in self.nodes if w.name == name)


def test_the_banner_verifies_the_witness_cosignatures(browser: Any, tmp_path: Path) -> None:
    state = build_state(tmp_path)
    witnesses = _Witnesses(tmp_path, state.authority)
    app = create_app(state.authority, state.keys, secure=False, witnesses=witnesses)  # type: ignore[arg-type]
    server = start_web(app, "127.0.0.1:0")
    try:
        page = _login(browser, f"http://127.0.0.1:{server.port}", state.regulator)
        assert _banner(page) == "ok", page.inner_text("#integrity")
        detail = page.inner_text("#integrity-detail")
        assert "witness cosignatures verified: 2 of 2 (jinan-node, qingdao-node)" in detail
        witnesses.forged = "qingdao-node"  # a cosignature whose signed text was changed
        state.authority.log.append("policy", {"digest": "01"})
        page.reload()
        assert _banner(page) == "bad"
        assert "cosignature of witness qingdao-node does not verify" in page.inner_text(
            "#integrity-status"
        )
    finally:
        server.stop()
