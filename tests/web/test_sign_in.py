"""Web sign-in through Django's test client: the sign-in, forced password change and sign-out
pages, the lock-out (django-axes, as the console), the MQTT credential endpoint, the page shell
and its security headers."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from org import services, web_auth
from org.lockout import signin_lockout_reset
from org.models import WebAccount, WebSession
from org.web_sessions import web_sessions_purge
from org.web_tokens import token_verify

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-42"
CREDENTIAL_URL = "/api/web/mqtt-credential"
INDEX_HTML = b'<!doctype html><html><head><script type="module" src="/static/web/assets/app.js"></script></head></html>'


@pytest.fixture
def dist(tmp_path, settings):
    """A stand-in for the built client (web/dist)."""
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_bytes(INDEX_HTML)
    settings.MCHAT_WEB_DIST_DIR = folder
    return folder


def make_employee(name="张三", *, password=PASSWORD, must_change=False, **kw):
    employee = services.employee_create(actor=None, name=name, **kw).employee
    web_auth.web_password_set(employee=employee, password=password, must_change=must_change)
    return employee


def sign_in(client, login, password=PASSWORD, **extra):
    return client.post("/login/", {"login": login, "password": password, **extra}, **_address(extra))


def _address(extra):
    return {"REMOTE_ADDR": extra.pop("address")} if "address" in extra else {}


def csrf_client() -> Client:
    """A client that must send the CSRF token, like a browser page."""
    client = Client(enforce_csrf_checks=True)
    client.get("/login/")
    return client


def signed_in_csrf_client(employee) -> Client:
    client = csrf_client()
    response = client.post(
        "/login/",
        {
            "login": employee.employee_id,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302
    return client


def post_credential(client, body=None):
    return client.post(
        CREDENTIAL_URL,
        data=json.dumps(body) if body is not None else "",
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )


# --- sign-in ----------------------------------------------------------------------------------


def test_sign_in_by_employee_id_or_email_opens_the_client(client, dist):
    employee = make_employee(email="Zhang.San@example.com")

    response = sign_in(client, employee.employee_id)
    assert response.status_code == 302 and response["Location"] == "/"
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    page = client.get("/")
    assert page.status_code == 200 and page.content == INDEX_HTML
    assert "csrftoken" in page.cookies

    other = Client()
    assert sign_in(other, "zhang.san@EXAMPLE.com").status_code == 302


def test_wrong_password_or_unknown_login_shows_the_form_again(client):
    employee = make_employee()
    for login, password in ((employee.employee_id, "wrong-password"), ("emp_nobody_001", PASSWORD), ("", "")):
        response = sign_in(client, login, password)
        assert response.status_code == 200
        assert "员工编号/邮箱或密码不正确" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_signing_in_again_ends_the_previous_sign_in_of_this_browser(client):
    first, second = make_employee("甲"), make_employee("乙")
    sign_in(client, first.employee_id)
    before = client.session[web_auth.SESSION_SID_KEY]
    sign_in(client, second.employee_id)
    assert client.session[web_auth.SESSION_SID_KEY] != before
    ended = WebSession.objects.get(sid=before)
    assert ended.ended_at is not None and ended.end_reason == "signed_out"


def test_a_shared_email_signs_in_no_one(client):
    make_employee("甲", email="team@example.com")
    make_employee("乙", email="team@example.com")
    assert sign_in(client, "team@example.com").status_code == 200


def test_console_accounts_and_web_accounts_stay_separate(client, admin_client):
    User.objects.create_user("hr-console", password=PASSWORD, is_staff=True)
    assert sign_in(client, "hr-console").status_code == 200  # a console user is not an employee

    employee = make_employee()
    assert sign_in(client, employee.employee_id).status_code == 302
    user = WebAccount.objects.get(employee=employee).user
    assert not user.is_staff and not user.is_superuser
    admin = client.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")


def test_inactive_employees_cannot_sign_in(client):
    employee = make_employee()
    services.employee_deactivate(actor=None, employee_id=employee.employee_id)
    assert sign_in(client, employee.employee_id).status_code == 200


# --- the initial password --------------------------------------------------------------------


def test_an_initial_password_must_be_changed_before_anything_else(dist):
    employee = make_employee(must_change=True)
    client = csrf_client()
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/login/?next=/c/private/emp_x_001",
        {"login": employee.employee_id, "password": PASSWORD, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/password/?next=%2Fc%2Fprivate%2Femp_x_001"
    assert client.get("/").status_code == 302 and client.get("/")["Location"].startswith("/password/")
    refused = post_credential(client)
    assert refused.status_code == 403 and refused.json()["code"] == 403

    page = client.get(response["Location"])
    assert "首次登录，请设置新密码" in page.content.decode()
    token = client.cookies["csrftoken"].value  # rotated at sign-in
    too_short = client.post(
        "/password/",
        {
            "new_password1": "short",
            "new_password2": "short",
            "next": "/c/private/emp_x_001",
            "csrfmiddlewaretoken": token,
        },
    )
    assert too_short.status_code == 200
    changed = client.post(
        "/password/",
        {
            "new_password1": "a-new-secret-77",
            "new_password2": "a-new-secret-77",
            "next": "/c/private/emp_x_001",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert changed.status_code == 302 and changed["Location"] == "/c/private/emp_x_001"
    # Still signed in (the session follows the new password), and now allowed in.
    assert client.get("/c/private/emp_x_001").status_code == 200
    assert post_credential(client).status_code == 200
    assert not WebAccount.objects.get(employee=employee).must_change_password
    assert sign_in(Client(), employee.employee_id, "a-new-secret-77").status_code == 302


def test_createemployee_prints_an_initial_web_password_once():
    out = StringIO()
    call_command("createemployee", "--name", "命令行同事", "--json", stdout=out)
    result = json.loads(out.getvalue())
    client = Client()
    response = sign_in(client, result["employee_id"], result["web_password"])
    assert response.status_code == 302 and response["Location"] == "/password/?next=%2F"
    assert result["web_password"] != result["mqtt_connection"]["mqtt_password"]


def test_hr_sets_an_initial_web_password_in_the_console(admin_client):
    employee = make_employee()
    data = {"action": "reset_web_password", "_selected_action": [employee.pk]}
    confirm = admin_client.post("/admin/org/employee/", data)
    assert confirm.status_code == 200 and "确认生成" in confirm.content.decode()
    done = admin_client.post("/admin/org/employee/", {**data, "post": "yes"})
    passwords = re.findall(r'<code class="mchat-web-password">([^<]+)</code>', done.content.decode())
    assert len(passwords) == 1
    assert "no-store" in done["Cache-Control"]
    assert sign_in(Client(), employee.employee_id).status_code == 200  # the old one is gone
    assert sign_in(Client(), employee.employee_id, passwords[0])["Location"] == "/password/?next=%2F"
    change_page = admin_client.get(f"/admin/org/employee/{employee.pk}/change/").content.decode()
    assert "已设置初始密码，待员工首次登录时修改" in change_page


# --- sign-out ---------------------------------------------------------------------------------


def test_sign_out_needs_post_and_the_csrf_token(dist):
    employee = make_employee()
    client = signed_in_csrf_client(employee)
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 403
    assert client.get("/").status_code == 200

    response = client.post("/logout/", {"csrfmiddlewaretoken": client.cookies["csrftoken"].value})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/")["Location"] == "/login/?next=%2F"
    assert post_credential(client).status_code in (401, 403)


# --- lock-out: django-axes, one policy with the console (org.lockout) -------------------------


def test_failed_sign_ins_lock_the_account_however_it_is_typed(settings):
    """Five failures (MCHAT_LOCKOUT_FAILURES) for one account, from five addresses and by its
    id and its email in any letter case, lock that account everywhere; others sign in."""
    assert settings.MCHAT_LOCKOUT_FAILURES == 5
    employee = make_employee(email="Zhang.San@example.com")
    other = make_employee("李四")
    typed = [
        employee.employee_id,
        "zhang.san@example.com",
        "ZHANG.SAN@EXAMPLE.COM",
        employee.employee_id.upper(),
    ]
    for n, login in enumerate(typed):
        response = sign_in(Client(), login, "wrong", address=f"10.0.1.{n}")
        assert response.status_code == 200 and "员工编号/邮箱或密码不正确" in response.content.decode()
    locked = sign_in(Client(), "Zhang.San@example.com", "wrong", address="10.0.1.9")
    assert locked.status_code == 429

    response = sign_in(Client(), employee.employee_id, address="10.0.2.1")  # even the right password
    page = response.content.decode()
    assert response.status_code == 429
    assert "登录已暂时锁定" in page and "连续 5 次登录失败" in page and "15 分钟后再试" in page
    assert 'href="/login/"' in page and "web-signin" in page  # the web's page, not the console's
    assert int(response["Retry-After"]) == 900
    assert sign_in(Client(), other.employee_id, address="10.0.2.1").status_code == 302


def test_failed_sign_ins_lock_the_address_for_every_account():
    employee = make_employee()
    colleague = make_employee("李四")
    # Successful sign-ins from one office address do not count.
    for _ in range(3):
        assert sign_in(Client(), colleague.employee_id, address="10.0.0.7").status_code == 302
    for n in range(4):
        assert sign_in(Client(), f"emp_guess_{n:03d}", "x", address="10.0.0.7").status_code == 200
    assert sign_in(Client(), "emp_guess_999", "x", address="10.0.0.7").status_code == 429
    assert sign_in(Client(), employee.employee_id, address="10.0.0.7").status_code == 429
    assert sign_in(Client(), employee.employee_id, address="10.0.0.8").status_code == 302


def test_hr_lifts_a_web_lock_out_by_employee_id():
    employee = make_employee(email="zhang.san@example.com")
    for n in range(5):
        sign_in(Client(), "Zhang.San@Example.com", "wrong", address=f"10.0.3.{n}")
    assert sign_in(Client(), employee.employee_id, address="10.0.4.1").status_code == 429
    assert signin_lockout_reset(username=employee.employee_id) >= 1
    assert sign_in(Client(), employee.employee_id, address="10.0.4.1").status_code == 302


def test_a_lock_out_answers_scripts_with_json():
    employee = make_employee()
    for n in range(5):
        sign_in(Client(), employee.employee_id, "wrong", address=f"10.0.5.{n}")
    response = Client().post(
        "/login/",
        {"login": employee.employee_id, "password": PASSWORD},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert response.status_code == 429 and response.json()["code"] == 429


# --- next= --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_url, expected",
    [
        ("/c/group/grp_x_001", "/c/group/grp_x_001"),
        ("https://evil.example/", "/"),
        ("//evil.example/path", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("http://testserver/c/private/x", "/"),
    ],
)
def test_next_is_followed_only_to_same_site_paths(client, next_url, expected):
    employee = make_employee()
    response = sign_in(client, employee.employee_id, next=next_url)
    assert response.status_code == 302 and response["Location"] == expected


def test_deep_links_ask_for_sign_in_and_come_back(client, dist):
    response = client.get("/c/group/grp_x_001")
    assert response.status_code == 302 and response["Location"] == "/login/?next=%2Fc%2Fgroup%2Fgrp_x_001"
    employee = make_employee()
    back = sign_in(client, employee.employee_id, next="/c/group/grp_x_001")
    assert back["Location"] == "/c/group/grp_x_001"
    assert client.get(back["Location"]).content == INDEX_HTML


# --- the MQTT credential ----------------------------------------------------------------------


def test_the_credential_needs_a_session_and_the_csrf_token(settings):
    anonymous = csrf_client()
    response = post_credential(anonymous)
    assert response.status_code == 401 and response.json()["code"] == 401

    employee = make_employee()
    client = signed_in_csrf_client(employee)
    no_token = client.post(CREDENTIAL_URL)
    assert no_token.status_code == 403 and no_token.json()["code"] == 403
    assert client.get(CREDENTIAL_URL).status_code == 405


def test_the_credential_is_a_short_lived_token_for_the_pages_own_client_id(settings):
    settings.MCHAT_PUBLIC_WS_URL = "ws://chat.example.test:8083"
    employee = make_employee(department_id=None, is_org_admin=True)
    client = signed_in_csrf_client(employee)
    before = time.time()

    response = post_credential(client)
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    body = response.json()
    assert set(body) == {
        "employee",
        "client_id",
        "username",
        "password",
        "expires_at",
        "refresh_in_seconds",
        "ws_url",
        "protocol_version",
    }
    assert body["employee"] == {
        "employee_id": employee.employee_id,
        "name": "张三",
        "is_org_admin": True,
        "is_ai_agent": False,
        "department_id": None,
    }
    assert body["username"] == employee.employee_id
    assert re.fullmatch(rf"{employee.employee_id}_web-[0-9a-f]{{12}}", body["client_id"])
    assert body["ws_url"] == "ws://chat.example.test:8083" and body["protocol_version"] == 5
    assert body["refresh_in_seconds"] == 240
    assert body["expires_at"].endswith("Z")
    sid = token_verify(
        key=web_auth.web_token_key(),
        token=body["password"],
        username=employee.employee_id,
        client_id=body["client_id"],
        now=before,
    )
    assert sid == client.session[web_auth.SESSION_SID_KEY]
    assert (
        token_verify(
            key=web_auth.web_token_key(),
            token=body["password"],
            username=employee.employee_id,
            client_id=body["client_id"],
            now=before + settings.MCHAT_WEB_TOKEN_TTL_SECONDS + 2,
        )
        is None
    )

    # A refresh keeps the device when asked; a malformed body is a clear 400.
    device = body["client_id"].rsplit("_", 1)[1]
    assert post_credential(client, {"device": device}).json()["client_id"] == body["client_id"]
    assert post_credential(client, {"device": "web-../../x"}).json()["client_id"] != body["client_id"]
    bad = client.post(
        CREDENTIAL_URL,
        data="{",
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert bad.status_code == 400 and bad.json()["code"] == 400


def test_a_deactivated_employee_is_signed_out_of_the_web(dist):
    employee = make_employee()
    client = signed_in_csrf_client(employee)
    assert client.get("/").status_code == 200

    services.employee_deactivate(actor=None, employee_id=employee.employee_id)

    assert post_credential(client).status_code == 401
    assert client.get("/")["Location"] == "/login/?next=%2F"


# --- the page shell ---------------------------------------------------------------------------


def test_the_shell_answers_503_with_a_clear_page_when_the_client_was_not_built(client, settings, tmp_path):
    settings.MCHAT_WEB_DIST_DIR = tmp_path / "missing"
    employee = make_employee()
    sign_in(client, employee.employee_id)
    response = client.get("/")
    assert response.status_code == 503
    assert "make web" in response.content.decode() and "网页客户端尚未构建" in response.content.decode()


def test_pages_carry_a_strict_content_security_policy(client, dist, settings):
    settings.MCHAT_PUBLIC_WS_URL = "ws://127.0.0.1:18083"
    settings.MCHAT_CSP_STORAGE_ORIGINS = ["https://files.example.test"]
    employee = make_employee()
    sign_in(client, employee.employee_id)
    for path in ("/", "/login/"):
        policy = client.get(path)["Content-Security-Policy"]
        directives = dict((part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip())
        assert directives["script-src"] == ["'self'"]
        assert directives["default-src"] == ["'self'"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert set(directives["connect-src"]) == {
            "'self'",
            "ws://127.0.0.1:18083",
            "https://files.example.test",
        }
        assert "https://files.example.test" in directives["img-src"]
        assert directives["object-src"] == ["'none'"]


def test_sign_in_pages_have_no_inline_scripts_or_styles(client):
    employee = make_employee(must_change=True)
    pages = [client.get("/login/").content.decode()]
    sign_in(client, employee.employee_id)
    pages.append(client.get("/password/").content.decode())
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)
        assert " style=" not in html and "<style" not in html
        # The stylesheet, by its plain or content-hashed name (ManifestStaticFilesStorage).
        assert re.search(r'href="/static/org/web-signin(\.[0-9a-f]{12})?\.css"', html)


def test_web_sessions_that_can_no_longer_matter_are_purged(settings):
    employee = make_employee()
    now = timezone.now()
    keep = [
        WebSession.objects.create(sid="a" * 32, employee=employee),  # active
        WebSession.objects.create(
            sid="b" * 32, employee=employee, ended_at=now, tokens_valid_until=now + timedelta(minutes=3)
        ),  # ended, a token still valid: web-revoked still lists it
    ]
    WebSession.objects.create(sid="c" * 32, employee=employee, ended_at=now)
    WebSession.objects.create(
        sid="d" * 32, employee=employee, ended_at=now, tokens_valid_until=now - timedelta(seconds=1)
    )
    old = WebSession.objects.create(sid="e" * 32, employee=employee)
    WebSession.objects.filter(pk=old.pk).update(
        created_at=now - timedelta(seconds=settings.SESSION_COOKIE_AGE + 1)
    )

    assert web_sessions_purge() == 3
    assert set(WebSession.objects.values_list("sid", flat=True)) == {s.sid for s in keep}
