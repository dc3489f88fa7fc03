"""Employees sign in to the web client through a real OpenID Connect provider on loopback
(django-oauth-toolkit in its own process, tests/oidc_provider): in Chromium from the sign-in
page to the conversation list; matched by email or by employee id; unknown, deactivated or
ambiguous people refused with a page saying so and nobody created (unless configured); local
passwords can be switched off; the sign-in, the SSO link and refusals are in the audit log."""

from __future__ import annotations

import re

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import AuditEvent
from org import services, web_auth
from org.models import Employee, WebAccount, WebSession
from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS
from tests.factories import private_message_send
from tests.oidc_provider.running import provider_settings, running_provider
from tests.web.test_browser_chat import _built, connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PERSON = {
    "username": "emp_wangxiaoli_001",
    "password": "Provider-pass-1",
    "email": "Wang.XiaoLi@corp.example",
}
ARTIFACTS = ARTIFACTS_DIR / "web"


def web_sso_settings(settings, url: str, **extra) -> None:
    provider_settings(settings, url)
    settings.MCHAT_WEB_OIDC = True
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "org.oidc.ConsoleOIDCBackend",
        "org.web_oidc.EmployeeOIDCBackend",
    ]
    for name, value in extra.items():
        setattr(settings, name, value)


@pytest.fixture
def provider(live_server, tmp_path):
    uris = [f"{live_server.url}/oidc/callback/", f"{live_server.url}/login/sso/callback/"]
    with running_provider(uris, PERSON, tmp_path) as url:
        yield url


@pytest.fixture
def sso(settings, provider):
    web_sso_settings(settings, provider)
    return provider


def through_provider(base: str, start: str = "/login/sso/?next=/c/group/grp_x") -> requests.Response:
    """A browser without JavaScript: MChat -> the provider's sign-in form -> back to MChat."""
    session = requests.Session()
    session.trust_env = False
    login = session.get(f"{base}{start}", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    response = session.post(
        login.url,
        data={"csrfmiddlewaretoken": token, "username": PERSON["username"], "password": PERSON["password"]},
        headers={"Referer": login.url},
        timeout=30,
    )
    response.session = session  # type: ignore[attr-defined]
    return response


def employee(name="王小丽", **kw) -> Employee:
    return services.employee_create(actor=None, name=name, **kw).employee


def test_an_employee_signs_in_by_email_and_gets_the_same_web_session(live_server, sso):
    person = employee(email="wang.xiaoli@corp.example")
    web_auth.web_password_set(employee=person)  # an initial password HR set: SSO need not change it

    response = through_provider(live_server.url)
    assert response.url == f"{live_server.url}/c/group/grp_x"
    http = response.session
    credential = http.post(
        f"{live_server.url}/api/web/mqtt-credential",
        headers={"X-CSRFToken": http.cookies["csrftoken"]},
        timeout=10,
    )
    assert credential.status_code == 200, credential.text
    assert credential.json()["client_id"].startswith(f"{person.employee_id}_web-")
    session = WebSession.objects.get(employee=person, ended_at__isnull=True)
    assert session.method == "sso"
    listed = http.get(f"{live_server.url}/api/web/sessions", timeout=10).json()["sessions"]
    assert [(s["method"], s["current"]) for s in listed] == [("sso", True)]

    [signed_in] = AuditEvent.objects.filter(action="sign_in")
    assert (signed_in.actor_id, signed_in.changes["method"], signed_in.changes["via"]) == (
        person.employee_id,
        "sso",
        "web",
    )
    [link] = AuditEvent.objects.filter(action="sso_link")
    assert link.actor_id == person.employee_id and link.changes["sso_subject"]["before"] is None
    assert WebAccount.objects.get(employee=person).sso_subject == link.changes["sso_subject"]["after"]

    # A second sign-in through the provider: the same link, no new sso_link row.
    through_provider(live_server.url)
    assert AuditEvent.objects.filter(action="sso_link").count() == 1
    assert WebSession.objects.filter(employee=person, ended_at__isnull=True).count() == 2


def test_matched_by_employee_id_and_the_account_is_made_at_first_sign_in(live_server, settings, provider):
    web_sso_settings(
        settings,
        provider,
        MCHAT_WEB_OIDC_MATCH_CLAIM="preferred_username",
        MCHAT_WEB_OIDC_EMPLOYEE_FIELD="employee_id",
    )
    person = employee(employee_id=PERSON["username"])
    assert not WebAccount.objects.filter(employee=person).exists()  # HR never set a web password

    response = through_provider(live_server.url, "/login/sso/")
    assert response.url == f"{live_server.url}/"
    account = WebAccount.objects.get(employee=person)
    assert not account.user.has_usable_password() and not account.must_change_password
    assert not account.user.is_staff
    # Password sign-in is not possible for an account made by SSO.
    refused = Client().post("/login/", {"login": person.employee_id, "password": "any-password-1"})
    assert refused.status_code == 200 and "员工编号/邮箱或密码不正确" in refused.content.decode()


@pytest.mark.parametrize(
    "setup, reason, text",
    [
        (lambda: None, "unknown", "没有与该企业账号对应的员工"),
        (
            lambda: services.employee_deactivate(
                actor=None, employee_id=employee(email=PERSON["email"]).employee_id
            ),
            "deactivated",
            "该员工账号已停用",
        ),
        (
            lambda: [employee(email=PERSON["email"]), employee("王小丽二号", email=PERSON["email"].upper())],
            "ambiguous",
            "对应了多名员工",
        ),
    ],
    ids=["unknown", "deactivated", "ambiguous"],
)
def test_refused_with_a_page_saying_why_and_nobody_created(live_server, sso, setup, reason, text):
    setup()
    employees, users = Employee.objects.count(), get_user_model().objects.count()

    response = through_provider(live_server.url)

    assert response.status_code == 403
    assert "企业账号登录失败" in response.text and text in response.text
    assert f'data-reason="{reason}"' in response.text
    assert (Employee.objects.count(), get_user_model().objects.count()) == (employees, users)
    assert not WebSession.objects.exists()
    [refused] = AuditEvent.objects.filter(action="sign_in_failed")
    assert refused.changes["reason"] == reason and refused.changes["method"] == "sso"
    assert refused.changes["claim"] == {"email": PERSON["email"]}


def test_unknown_people_become_employees_only_when_configured(live_server, settings, provider):
    web_sso_settings(settings, provider, MCHAT_WEB_OIDC_CREATE_EMPLOYEES=True)
    response = through_provider(live_server.url, "/login/sso/")
    assert response.url == f"{live_server.url}/"
    person = Employee.objects.get(email=PERSON["email"])
    assert person.is_active and not person.is_org_admin and not person.is_ai_agent
    assert AuditEvent.objects.filter(action="employee_create", target_id=person.employee_id).exists()


def test_the_console_callback_never_signs_in_employees(live_server, sso):
    """The same provider person is an employee but no console user: the console refuses."""
    employee(email=PERSON["email"])
    response = through_provider(live_server.url, "/oidc/authenticate/?next=/admin/")
    assert response.url.startswith(f"{live_server.url}/admin/login/?sso=failed")


def test_local_passwords_can_be_switched_off(settings):
    web_sso_settings(settings, "http://127.0.0.1:9", MCHAT_WEB_LOCAL_PASSWORDS=False)
    person = employee()
    web_auth.web_password_set(employee=person, password="correct-horse-42", must_change=False)
    page = Client().get("/login/?next=/c/group/grp_x").content.decode()
    assert "使用企业账号登录" in page and 'href="/login/sso/?next=/c/group/grp_x"' in page
    assert 'name="password"' not in page
    browser = Client()
    refused = browser.post("/login/", {"login": person.employee_id, "password": "correct-horse-42"})
    assert refused.status_code == 403 and "_auth_user_id" not in browser.session


def test_without_web_sso_the_page_and_urls_are_as_before(client):
    assert client.get("/login/sso/").status_code == 404
    assert client.get("/login/sso/callback/").status_code == 404
    page = client.get("/login/").content.decode()
    assert "使用企业账号登录" not in page and 'name="password"' in page


# --- in Chromium ---------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.broker
def test_an_employee_signs_in_through_the_provider_and_reaches_the_conversation_list(
    web_stack, settings, tmp_path
):
    assert _built(), "the web client is not built: run `make web`"
    base = web_stack.base_url
    person = web_stack.make_employee(name="王小丽", email="wang.xiaoli@corp.example")
    colleague = web_stack.make_employee(name="赵大勇")
    private_message_send(colleague, person, "欢迎加入，明早九点站会")
    other_browser = web_stack.sign_in(person.employee_id)  # a password sign-in elsewhere
    assert other_browser.credential().status_code == 200

    with running_provider([f"{base}/login/sso/callback/"], PERSON, tmp_path) as url:
        web_sso_settings(settings, url)
        seen = _browse(base, colleague.employee_id)

    assert seen["provider_url"].startswith(f"{url}/accounts/login/")
    assert seen["row"].count("欢迎加入，明早九点站会") == 1 and "赵大勇" in seen["row"]
    assert seen["devices"] == 2 and seen["devices_after"] == 1
    assert other_browser.credential().status_code == 401  # ended from the SSO browser's panel
    assert WebSession.objects.get(employee=person, ended_at__isnull=True).method == "sso"


def _browse(base: str, colleague_id: str) -> dict:
    from playwright.sync_api import expect, sync_playwright

    seen: dict = {}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800}).new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{base}/")
            page.wait_for_url("**/login/**")
            page.screenshot(path=str(ARTIFACTS / "sso-01-login.png"), full_page=True)
            page.click("#mchat-web-sso")
            page.wait_for_selector("#provider-login")
            seen["provider_url"] = page.url
            page.fill("#id_username", PERSON["username"])
            page.fill("#id_password", PERSON["password"])
            page.click("#provider-login input[type=submit]")
            page.wait_for_url(f"{base}/")
            connected(page)
            row = page.locator(f"[data-testid=conversation][data-key='private:{colleague_id}']")
            expect(row).to_contain_text("欢迎加入，明早九点站会")
            seen["row"] = row.inner_text()
            page.screenshot(path=str(ARTIFACTS / "sso-02-conversation-list.png"))

            page.click("[data-testid=tab-devices]")
            devices = page.locator("[data-testid=device]")
            expect(devices).to_have_count(2)
            seen["devices"] = devices.count()
            expect(page.locator("[data-testid=device][data-current=true]")).to_contain_text("企业账号")
            page.screenshot(path=str(ARTIFACTS / "sso-03-devices.png"))
            page.locator("[data-testid=device][data-current=false] [data-testid=device-end]").click()
            expect(devices).to_have_count(1)
            seen["devices_after"] = devices.count()
        finally:
            browser.close()
    return seen
