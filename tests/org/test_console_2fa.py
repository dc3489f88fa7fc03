"""Two-factor for the console (MCHAT_CONSOLE_2FA): enrolment at first sign-in, a valid TOTP
code at every sign-in, recovery codes, and the gate on the console and the session API.
Codes are computed from the device's secret as an authenticator app would (RFC 6238)."""

from __future__ import annotations

import re
from base64 import b32decode

import pytest
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

pytestmark = pytest.mark.django_db

PASSWORD = "Xq7-console-pass"


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MCHAT_CONSOLE_2FA = "required"


@pytest.fixture
def hr_user(db):
    return get_user_model().objects.create_user("hr", password=PASSWORD, is_staff=True, is_superuser=True)


def code_for(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code an authenticator shows now (or `steps_ahead` periods later)."""
    return (
        f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps_ahead):06d}"
    )


def sign_in_with_password(client):
    response = client.post("/admin/login/?next=/admin/", {"username": "hr", "password": PASSWORD})
    assert response.status_code == 302
    return client.get("/admin/")


def test_first_sign_in_enrols_then_every_sign_in_needs_a_code(client, hr_user, caplog):
    response = sign_in_with_password(client)
    # Not in the console yet: off to enrolment.
    assert response.status_code == 302 and response["Location"].startswith("/admin/2fa/enrol/")
    page = client.get(response["Location"]).content.decode()
    assert "设置两步验证" in page and "<svg" in page
    device = TOTPDevice.objects.get(user=hr_user, confirmed=False)
    secret = re.search(r'id="mchat-2fa-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    assert b32decode(secret) == device.bin_key
    assert "otpauth://totp/MChat%3Ahr?secret=" in page

    bad = client.post(
        "/admin/2fa/enrol/?next=/admin/", {"code": f"{(int(code_for(device)) + 1) % 1_000_000:06d}"}
    )
    assert "验证码不正确" in bad.content.decode()
    assert client.get("/admin/").status_code == 302
    # django-otp throttles a device after a wrong code (1 s, doubling); as if that second passed:
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)

    done = client.post("/admin/2fa/enrol/", {"code": code_for(device), "next": "/admin/"})
    page = done.content.decode()
    assert "恢复码只显示这一次" in page
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", page)
    assert len(codes) == 10 and StaticToken.objects.filter(device__user=hr_user).count() == 10
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/admin/").status_code == 200

    # The next sign-in: password, then the code step; the console stays shut until a valid code.
    client.post("/admin/logout/")
    response = sign_in_with_password(client)
    assert response.status_code == 302 and response["Location"].startswith("/admin/2fa/verify/")
    assert client.get("/admin/org/employee/").status_code == 302
    assert client.get("/api/v1/employees/").status_code == 403
    # Replaying the code used at enrolment is refused (same time step).
    replay = client.post("/admin/2fa/verify/", {"code": code_for(device), "next": "/admin/"})
    assert replay.status_code == 200 and "验证码无效或已使用过" in replay.content.decode()
    assert client.get("/admin/").status_code == 302
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    # The next period's code (what the phone shows a little later; one step of drift allowed).
    ok = client.post(
        "/admin/2fa/verify/", {"code": code_for(device, steps_ahead=1), "next": "/admin/org/employee/"}
    )
    assert ok.status_code == 302 and ok["Location"] == "/admin/org/employee/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/api/v1/employees/").status_code == 200

    # A recovery code works once (the replay above throttled every device for a second).
    StaticDevice.objects.update(throttling_failure_timestamp=None)
    client.post("/admin/logout/")
    sign_in_with_password(client)
    assert client.post("/admin/2fa/verify/", {"code": codes[0]}).status_code == 302
    assert client.get("/admin/").status_code == 200
    client.post("/admin/logout/")
    sign_in_with_password(client)
    StaticDevice.objects.update(throttling_failure_timestamp=None)
    assert "验证码无效或已使用过" in client.post("/admin/2fa/verify/", {"code": codes[0]}).content.decode()
    assert client.get("/admin/").status_code == 302

    events = [r.getMessage() for r in caplog.records if r.name == "mchat.signin"]
    assert any(e.startswith("console 2fa enrolled: user=hr address=127.0.0.1") for e in events)
    assert any(e.startswith("console 2fa recovery code used: user=hr") for e in events)
    assert sum(e.startswith("console 2fa code refused: user=hr") for e in events) == 2


def test_off_and_optional(client, hr_user, settings):
    settings.MCHAT_CONSOLE_2FA = "off"
    assert sign_in_with_password(client).status_code == 200
    client.post("/admin/logout/")
    # optional: without an authenticator, straight in; with one, the code step.
    settings.MCHAT_CONSOLE_2FA = "optional"
    assert sign_in_with_password(client).status_code == 200
    TOTPDevice.objects.create(user=hr_user, name="phone", confirmed=True)
    client.post("/admin/logout/")
    response = sign_in_with_password(client)
    assert response.status_code == 302 and response["Location"].startswith("/admin/2fa/verify/")


def test_pages_need_a_signed_in_console_user(client, db):
    for url in ("/admin/2fa/enrol/", "/admin/2fa/verify/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_next_must_stay_on_this_site(client, hr_user):
    sign_in_with_password(client)
    client.get("/admin/2fa/enrol/")
    device = TOTPDevice.objects.get(user=hr_user)
    page = client.post("/admin/2fa/enrol/", {"code": code_for(device), "next": "https://evil.example/"})
    assert "https://evil.example/" not in page.content.decode()
