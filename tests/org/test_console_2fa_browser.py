"""In Chromium: with MCHAT_CONSOLE_2FA=required an enrolled admin who typed the right password
still cannot reach the console without a valid TOTP code, and can with one. A screenshot of
the code step is kept (var/test-artifacts/, MCHAT_TEST_ARTIFACTS)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

PASSWORD = "Xq7-console-pass"


def _admin_session(base: str, key: bytes) -> dict:
    """The browser part; no ORM calls here (Playwright's sync API runs an event loop)."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(locale="zh-CN", viewport={"width": 1100, "height": 700}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{base}/admin/login/?next=/admin/")
            page.fill("#id_username", "hr")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_selector("#mchat-2fa-verify")
            seen["after_password"] = page.url
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-console-2fa-code.png"), full_page=True)

            # Straight to the console without a code: sent back to the code step.
            page.goto(f"{base}/admin/org/employee/")
            page.wait_for_selector("#mchat-2fa-verify")
            seen["console_without_code"] = page.url

            page.fill("#id_code", "12345")
            page.click("#mchat-2fa-verify input[type=submit]")
            page.wait_for_selector(".errorlist")
            seen["wrong_code_page"] = page.content()

            page.fill("#id_code", f"{totp(key):06d}")
            page.click("#mchat-2fa-verify input[type=submit]")
            page.wait_for_url(f"{base}/admin/org/employee/")
            seen["console_page"] = page.content()
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-console-2fa-signed-in.png"), full_page=True)
        finally:
            browser.close()
    return seen


def test_admin_needs_a_valid_code_to_reach_the_console(live_server, settings):
    settings.MCHAT_CONSOLE_2FA = "required"
    # The wrong-code step would otherwise throttle the device for a second (tested without a
    # browser in test_console_2fa.py); here the point is the gate.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    user = get_user_model().objects.create_user("hr", password=PASSWORD, is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

    seen = _admin_session(live_server.url, device.bin_key)

    assert "/admin/2fa/verify/" in seen["after_password"]
    assert "/admin/2fa/verify/" in seen["console_without_code"]
    assert "验证码无效或已使用过" in seen["wrong_code_page"]
    assert "员工" in seen["console_page"] and "mchat-2fa-verify" not in seen["console_page"]
    assert (ARTIFACTS_DIR / "mchat-console-2fa-code.png").stat().st_size > 0
