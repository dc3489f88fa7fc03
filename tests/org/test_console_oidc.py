"""Single sign-on for the console through a real OpenID Connect provider on loopback
(django-oauth-toolkit in its own process, tests/oidc_provider): HR signs in in Chromium
through the provider; a person without a matching console user, or a deactivated one, is
refused; nobody is created."""

from __future__ import annotations

import re

import pytest
import requests
from django.contrib.auth import get_user_model

from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS
from tests.oidc_provider.running import provider_settings, running_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PERSON = {"username": "zhangsan", "password": "Provider-pass-1", "email": "zhangsan@corp.example"}


@pytest.fixture
def provider(live_server, tmp_path):
    """The provider process, with MChat's callback on this test's live server."""
    with running_provider([f"{live_server.url}/oidc/callback/"], PERSON, tmp_path) as url:
        yield url


@pytest.fixture
def sso(settings, provider):
    provider_settings(settings, provider)
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "org.oidc.ConsoleOIDCBackend"]
    return provider


def _sign_in_through_provider(base: str) -> dict:
    """Chromium: the console's login page -> the provider -> back in the console."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(locale="zh-CN").new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{base}/admin/login/?next=/admin/")
            page.click("#mchat-sso a")
            page.wait_for_selector("#provider-login")
            seen["provider_url"] = page.url
            page.fill("#id_username", PERSON["username"])
            page.fill("#id_password", PERSON["password"])
            page.click("#provider-login input[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            seen["console_page"] = page.content()
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-console-sso.png"), full_page=True)
        finally:
            browser.close()
    return seen


@pytest.mark.browser
def test_hr_signs_in_to_the_console_through_the_provider(live_server, sso):
    get_user_model().objects.create_user(
        "hr-zhang", email="ZhangSan@corp.example", is_staff=True, is_superuser=True
    )

    seen = _sign_in_through_provider(live_server.url)

    assert seen["provider_url"].startswith(f"{sso}/accounts/login/")
    assert "站点管理" in seen["console_page"] and "hr-zhang" in seen["console_page"]


def _sign_in_with_requests(base: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    login = session.get(f"{base}/oidc/authenticate/?next=/admin/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    return session.post(
        login.url,
        data={"csrfmiddlewaretoken": token, "username": PERSON["username"], "password": PERSON["password"]},
        headers={"Referer": login.url},
    )


def test_no_matching_console_user_is_refused_and_nobody_is_created(live_server, sso):
    users_before = get_user_model().objects.count()
    response = _sign_in_with_requests(live_server.url)
    assert response.url.startswith(f"{live_server.url}/admin/login/?sso=failed")
    assert "企业账号登录失败" in response.text
    assert get_user_model().objects.count() == users_before


def test_a_deactivated_user_is_refused(live_server, sso):
    get_user_model().objects.create_user("hr-zhang", email=PERSON["email"], is_staff=True, is_active=False)
    response = _sign_in_with_requests(live_server.url)
    assert response.url.startswith(f"{live_server.url}/admin/login/?sso=failed")


def test_without_configuration_there_is_no_single_sign_on(client):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert "mchat-sso" not in client.get("/admin/login/").content.decode()


def test_local_passwords_can_be_switched_off_when_sso_is_on(client, settings):
    """What MCHAT_LOCAL_PASSWORDS=false gives (settings.py drops ModelBackend then)."""
    settings.MCHAT_OIDC = True
    settings.MCHAT_LOCAL_PASSWORDS = False
    settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "org.oidc.ConsoleOIDCBackend"]
    settings.OIDC_OP_TOKEN_ENDPOINT = settings.OIDC_OP_USER_ENDPOINT = "http://127.0.0.1:9/unused"
    settings.OIDC_OP_JWKS_ENDPOINT = "http://127.0.0.1:9/unused"
    settings.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_SECRET = "unused"
    get_user_model().objects.create_user("hr", password="Xq7-console-pass", is_staff=True)
    page = client.get("/admin/login/").content.decode()
    assert "使用企业账号登录" in page and "id_password" not in page
    response = client.post("/admin/login/?next=/admin/", {"username": "hr", "password": "Xq7-console-pass"})
    assert response.status_code == 200 and client.get("/admin/").status_code == 302
