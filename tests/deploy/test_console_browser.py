"""What a person sees from the web process as `make up` runs it (gunicorn + WhiteNoise), in
Debian's Chromium: the HR console with its stylesheet applied, and the API docs rendered from
our own static files, with no request leaving this machine."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# Django admin's header colour (--header-bg, #417690); an unstyled page has a transparent header.
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"


def _visit(base: str) -> dict:
    """Browser work only: Playwright's sync API runs an event loop here, where the ORM refuses."""
    from playwright.sync_api import sync_playwright

    seen: dict = {"external": [], "failed": []}
    origin = urlparse(base).netloc

    def only_this_server(route):
        # Every request that would leave the browser: anything not for this server is recorded
        # and refused (an intranet has no way out either).
        if urlparse(route.request.url).netloc == origin:
            route.continue_()
        else:
            seen["external"].append(route.request.url)
            route.abort()

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            context.route("**/*", only_this_server)
            page.on("response", lambda r: r.status >= 400 and seen["failed"].append(f"{r.status} {r.url}"))

            page.goto(f"{base}/admin/login/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", "password")
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            header = page.locator("#header")
            seen["header_background"] = header.evaluate("el => getComputedStyle(el).backgroundColor")
            seen["header_display"] = header.evaluate("el => getComputedStyle(el).display")
            seen["stylesheets"] = page.eval_on_selector_all(
                "link[rel=stylesheet]", "links => links.map(l => l.getAttribute('href'))"
            )
            page.screenshot(path=str(ARTIFACTS_DIR / "console-index.png"), full_page=True)

            page.goto(f"{base}/api/docs/")
            paths = page.locator(".opblock-summary-path")
            paths.filter(has_text="/api/v1/employees/").first.wait_for()
            seen["doc_paths"] = [p.strip() for p in paths.all_inner_texts()]
            page.screenshot(path=str(ARTIFACTS_DIR / "api-docs.png"), full_page=True)

            page.goto(f"{base}/api/redoc/")
            page.get_by_text("/api/v1/employees/").first.wait_for()
            seen["redoc_text"] = page.locator("body").inner_text()
        finally:
            browser.close()
    return seen


def test_console_is_styled_and_api_docs_render_offline(web_server, admin_user):
    seen = _visit(web_server.url)

    assert seen["header_background"] == ADMIN_HEADER_BACKGROUND
    assert seen["header_display"] == "flex"
    # Hashed names (cached for a year, changed with the content).
    assert any(
        href.startswith("/static/admin/css/base.") and href != "/static/admin/css/base.css"
        for href in seen["stylesheets"]
    ), seen["stylesheets"]
    assert (ARTIFACTS_DIR / "console-index.png").stat().st_size > 10_000

    assert "/api/v1/employees/" in seen["doc_paths"]
    assert "/api/v1/employees/{employee_id}/" in seen["doc_paths"] or any(
        p.startswith("/api/v1/employees/{") for p in seen["doc_paths"]
    )
    assert "MChat HR integration API" in seen["redoc_text"]

    assert seen["external"] == []
    assert seen["failed"] == []
