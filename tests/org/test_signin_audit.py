"""Sign-in events in the audit log (org.signin_audit): console and web sign-ins, failures,
lock-outs, sign-outs, two-factor enrolment and codes, each with the address and the browser's
User-Agent, the console user or the employee as actor. A guesser refused during a lock-out
adds no rows; a typed login that names no account is never stored as typed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import AuditEvent
from org import services, web_auth

pytestmark = pytest.mark.django_db

PASSWORD = "Xq7-console-pass"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def hr_user(db):
    return get_user_model().objects.create_user("hr", password=PASSWORD, is_staff=True, is_superuser=True)


def browser(address="10.1.2.3") -> Client:
    return Client(HTTP_USER_AGENT=AGENT, REMOTE_ADDR=address)


def console_sign_in(client, password=PASSWORD, username="hr"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def web_sign_in(client, login, password=PASSWORD):
    return client.post("/login/", {"login": login, "password": password})


def rows(action=None):
    queryset = AuditEvent.objects.order_by("id")
    return list(queryset.filter(action=action) if action else queryset)


def make_employee(name="张三", **kw):
    employee = services.employee_create(actor=None, name=name, **kw).employee
    web_auth.web_password_set(employee=employee, password=PASSWORD, must_change=False)
    return employee


def test_console_sign_in_failure_and_sign_out_are_recorded(hr_user):
    client = browser()
    assert console_sign_in(client, "wrong").status_code == 200
    assert console_sign_in(client).status_code == 302
    client.post("/admin/logout/")

    failed, signed_in, signed_out = rows("sign_in_failed"), rows("sign_in"), rows("sign_out")
    assert len(failed) == len(signed_in) == len(signed_out) == 1
    row = failed[0]
    assert (row.actor_type, row.target_type, row.target_id) == ("system", "user", "hr")
    assert (row.source, row.address) == ("console", "10.1.2.3")
    assert row.changes == {"via": "console", "method": "password", "user_agent": AGENT}
    row = signed_in[0]
    assert (row.actor_type, row.actor_id, row.source_user, row.target_id) == ("user", "hr", "hr", "hr")
    assert row.changes == {"via": "console", "method": "password", "user_agent": AGENT}
    assert (signed_out[0].actor_id, signed_out[0].address) == ("hr", "10.1.2.3")


def test_a_lock_out_is_one_row_and_refused_guesses_add_none(hr_user, settings):
    client = browser()
    for _ in range(settings.MCHAT_LOCKOUT_FAILURES):
        console_sign_in(client, "wrong")
    for _ in range(20):  # refused unchecked during the cool-off
        assert console_sign_in(client, "wrong").status_code == 429
    assert console_sign_in(client).status_code == 429

    assert len(rows("sign_in_failed")) == settings.MCHAT_LOCKOUT_FAILURES
    [locked] = rows("sign_in_locked_out")
    assert (locked.target_type, locked.target_id, locked.address) == ("user", "hr", "10.1.2.3")
    assert locked.changes["failures"] == settings.MCHAT_LOCKOUT_FAILURES
    assert locked.changes["cooloff_minutes"] == settings.MCHAT_LOCKOUT_COOLOFF_MINUTES
    assert rows("sign_in") == []


def test_unknown_logins_are_not_stored_as_typed(db):
    client = browser()
    console_sign_in(client, "hunter2-typed-in-the-wrong-box", username="hunter2-typed-in-the-wrong-box")
    web_sign_in(client, "my-secret-Passw0rd", "x")
    everything = str(list(AuditEvent.objects.values()))
    assert "hunter2" not in everything and "my-secret" not in everything
    assert [(r.target_type, r.target_display, r.changes["via"]) for r in rows("sign_in_failed")] == [
        ("user", "unknown", "console"),
        ("employee", "unknown", "web"),
    ]


def test_web_sign_in_failure_and_sign_out_name_the_employee():
    employee = make_employee(email="zhang.san@example.com")
    client = browser("10.9.9.9")
    web_sign_in(client, "Zhang.San@Example.com", "wrong")
    assert web_sign_in(client, employee.employee_id).status_code == 302
    client.post("/logout/")

    [failed] = rows("sign_in_failed")
    assert (failed.actor_type, failed.target_type, failed.target_id) == (
        "system",
        "employee",
        employee.employee_id,
    )
    assert failed.changes == {"via": "web", "method": "password", "user_agent": AGENT}
    [signed_in] = rows("sign_in")
    assert (signed_in.actor_type, signed_in.actor_id, signed_in.address) == (
        "employee",
        employee.employee_id,
        "10.9.9.9",
    )
    assert signed_in.changes["via"] == "web" and signed_in.changes["method"] == "password"
    assert signed_in.changes["user_agent"] == AGENT and signed_in.changes["session"]
    [signed_out] = rows("sign_out")
    # The web client's pages are their own source, not the console's.
    assert {failed.source, signed_in.source, signed_out.source} == {"web"}
    assert (signed_out.actor_id, signed_out.changes["session"]) == (
        employee.employee_id,
        signed_in.changes["session"],
    )


def test_two_factor_enrolment_codes_and_refusals_are_recorded(hr_user, settings):
    settings.MCHAT_CONSOLE_2FA = "required"
    client = browser()
    console_sign_in(client)
    client.get("/admin/2fa/enrol/")
    device = TOTPDevice.objects.get(user=hr_user)

    def code(drift=0):
        return (
            f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=drift):06d}"
        )

    client.post("/admin/2fa/enrol/", {"code": f"{(int(code()) + 1) % 1_000_000:06d}"})
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    client.post("/admin/2fa/enrol/", {"code": code(), "next": "/admin/"})
    client.post("/admin/logout/")
    console_sign_in(client)
    client.post("/admin/2fa/verify/", {"code": code(drift=1), "next": "/admin/"})

    [refused] = rows("console_2fa_refused")
    [enrolled] = rows("console_2fa_enrol")
    [verified] = rows("console_2fa_verify")
    assert refused.changes["step"] == "enrol"
    assert (enrolled.actor_type, enrolled.actor_id, enrolled.target_id) == ("user", "hr", "hr")
    assert enrolled.changes == {"via": "console", "recovery_codes": 10, "user_agent": AGENT}
    assert verified.changes["method"] == "totp" and verified.address == "10.1.2.3"
    assert [r.action for r in rows() if r.action.startswith("sign_")] == ["sign_in", "sign_out", "sign_in"]


def test_the_test_clients_force_login_is_no_sign_in(hr_user):
    client = Client()
    client.force_login(hr_user)
    client.logout()
    assert rows() == []
