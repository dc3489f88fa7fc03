"""Sign-in in a real browser (Debian's Chromium through Playwright) against web_stack, with the
Content-Security-Policy enforced: a deep link asks for sign-in, the initial password must be
replaced, and the page then gets its MQTT credential and connects to the broker's WebSockets
listener with it. The page is a stand-in for the built client: a module script that does what
the client does first (credential over fetch with the CSRF token, MQTT CONNECT over WebSocket).
Screenshots of the sign-in pages are kept in var/test-artifacts/ (MCHAT_TEST_ARTIFACTS)."""

from __future__ import annotations

import pytest

from org import web_auth
from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.broker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


INDEX_HTML = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>MChat</title>
<script type="module" src="/static/web/assets/probe.js"></script></head>
<body><p id="probe">starting</p><p id="inline">inline scripts blocked</p>
<script>document.getElementById("inline").textContent = "inline script ran";</script></body></html>
"""

# What the client does first: the credential (session cookie + X-CSRFToken), then an MQTT
# 3.1.1 CONNECT over a WebSocket to ws_url with the token; shows the CONNACK return code.
PROBE_JS = r"""
const show = (text) => { document.getElementById("probe").textContent = text; };
const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken=")).split("=")[1];
const response = await fetch("/api/web/mqtt-credential", {method: "POST", headers: {"X-CSRFToken": csrf}});
if (!response.ok) { show(`credential ${response.status}`); throw new Error("no credential"); }
const cred = await response.json();
const utf8 = (s) => { const b = new TextEncoder().encode(s); return [b.length >> 8, b.length & 255, ...b]; };
const varint = (n) => { const out = []; do { let d = n % 128; n = Math.floor(n / 128); if (n > 0) d |= 128; out.push(d); } while (n > 0); return out; };
const body = [...utf8("MQTT"), 4, 0xc2, 0, 30, ...utf8(cred.client_id), ...utf8(cred.username), ...utf8(cred.password)];
const ws = new WebSocket(cred.ws_url, "mqtt");
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send(new Uint8Array([0x10, ...varint(body.length), ...body]));
ws.onmessage = (event) => show(`${cred.employee.name} CONNACK ${new Uint8Array(event.data)[3]}`);
ws.onerror = () => show("websocket error");
"""


@pytest.fixture
def built_client(tmp_path, settings):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(INDEX_HTML)
    (dist / "assets" / "probe.js").write_text(PROBE_JS)
    settings.MCHAT_WEB_DIST_DIR = dist
    return dist


def _browse(base: str, login: str, initial_password: str) -> dict:
    """Everything the employee does in the browser (no ORM here: Playwright's sync API runs an
    event loop in this thread)."""
    from playwright.sync_api import sync_playwright

    seen: dict = {"console": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 760})
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda message: seen["console"].append(message.text))

            page.goto(f"{base}/c/private/emp_someone_001")
            seen["login_url"] = page.url
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-web-login.png"), full_page=True)
            page.fill("#id_login", login)
            page.fill("#id_password", "not-the-password")
            page.click("button[type=submit]")
            seen["error"] = page.locator(".error").inner_text()
            page.fill("#id_password", initial_password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/password/**")
            seen["password_heading"] = page.locator("h2").inner_text()
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-web-password.png"), full_page=True)
            page.fill("#id_new_password1", "my-own-password-9")
            page.fill("#id_new_password2", "my-own-password-9")
            page.click("form.form:not(.secondary) button[type=submit]")
            page.wait_for_url(f"{base}/c/private/emp_someone_001")
            # (Not wait_for_function: evaluating a string is refused by the CSP, as it should be.)
            page.locator("#probe", has_text="CONNACK").wait_for()
            seen["probe"] = page.locator("#probe").inner_text()
            seen["inline"] = page.locator("#inline").inner_text()
        finally:
            browser.close()
    return seen


def test_sign_in_change_the_initial_password_and_connect_over_websockets(built_client, web_stack):
    employee = web_stack.make_employee(name="王小丽")
    initial = web_auth.web_password_set(employee=employee)  # as HR does: must be changed

    seen = _browse(web_stack.base_url, employee.employee_id, initial)

    assert seen["login_url"] == f"{web_stack.base_url}/login/?next=%2Fc%2Fprivate%2Femp_someone_001"
    assert "员工编号/邮箱或密码不正确" in seen["error"]
    assert seen["password_heading"] == "首次登录，请设置新密码"
    assert seen["probe"] == "王小丽 CONNACK 0"
    # The CSP is enforced: the stand-in page's inline script did not run.
    assert seen["inline"] == "inline scripts blocked"
    assert any("Content Security Policy" in text for text in seen["console"])
