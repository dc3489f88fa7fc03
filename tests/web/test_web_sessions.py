"""An employee's sign-ins ("登录设备"): several browsers at once, each listed with its device,
address and times; the employee ends any from another browser, HR ends any in the console;
an ended sign-in's MQTT tokens are refused and its live connection closed (web-revoked)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from audit.models import AuditEvent
from org import services, web_auth
from org.models import WebSession
from org.web_sessions import device_label
from tests.web.test_live_web import NOT_AUTHORIZED, signed_in_page, ws_connack

PASSWORD = "correct-horse-42"
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86"
)


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_employee(name="张三"):
    employee = services.employee_create(actor=None, name=name).employee
    web_auth.web_password_set(employee=employee, password=PASSWORD, must_change=False)
    return employee


def browser(employee, *, agent: str, address: str) -> Client:
    """A browser signed in as the employee (its own cookies, User-Agent and address)."""
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=agent, REMOTE_ADDR=address)
    client.get("/login/")
    response = client.post(
        "/login/",
        {
            "login": employee.employee_id,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert response.status_code == 302, response.content.decode()
    return client


def csrf(client: Client) -> dict:
    return {"headers": {"X-CSRFToken": client.cookies["csrftoken"].value}}


def credential(client: Client):
    return client.post("/api/web/mqtt-credential", data="", content_type="application/json", **csrf(client))


def end(client: Client, session_id: str):
    return client.post(f"/api/web/sessions/{session_id}/end", **csrf(client))


@pytest.mark.parametrize(
    "agent, label",
    [
        (CHROME, "Chrome 131 · Linux"),
        (IPHONE, "Safari 17 · iPhone"),
        (EDGE, "Edge 131 · Windows"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128 · Linux"),
        ("curl/8.5.0", ""),
        ("", ""),
    ],
)
def test_device_labels_people_recognise(agent, label):
    assert device_label(agent) == label


@pytest.mark.django_db
def test_an_employee_is_signed_in_on_several_browsers_and_sees_them_all(django_capture_on_commit_callbacks):
    employee = make_employee()
    laptop = browser(employee, agent=CHROME, address="10.0.0.5")
    phone = browser(employee, agent=IPHONE, address="10.8.0.9")
    assert credential(laptop).status_code == 200
    assert credential(phone).status_code == 200  # the first browser was not signed out

    listed = laptop.get("/api/web/sessions")
    assert listed.status_code == 200 and "no-cache" in listed["Cache-Control"]
    sessions = listed.json()["sessions"]
    assert [(s["current"], s["device"], s["address"], s["method"]) for s in sessions] == [
        (True, "Chrome 131 · Linux", "10.0.0.5", "password"),
        (False, "Safari 17 · iPhone", "10.8.0.9", "password"),
    ]
    assert sessions[1]["user_agent"] == IPHONE
    assert all(s["started_at"].endswith("Z") and s["last_seen_at"].endswith("Z") for s in sessions)
    assert Client().get("/api/web/sessions").status_code == 401


@pytest.mark.django_db
def test_ending_another_browser_signs_it_out_and_revokes_its_tokens(
    settings, django_capture_on_commit_callbacks
):
    employee = make_employee()
    laptop = browser(employee, agent=CHROME, address="10.0.0.5")
    phone = browser(employee, agent=IPHONE, address="10.8.0.9")
    phone_client_id = credential(phone).json()["client_id"]
    phone_row = next(s for s in laptop.get("/api/web/sessions").json()["sessions"] if not s["current"])

    assert laptop.post(f"/api/web/sessions/{phone_row['id']}/end").status_code == 403  # CSRF
    with django_capture_on_commit_callbacks(execute=True):
        response = end(laptop, phone_row["id"])
    assert response.status_code == 200 and response.json() == {"ended": phone_row["id"], "signed_out": False}

    # The phone: its credential refused, its page signed out; the broker lists its session.
    assert credential(phone).status_code == 401
    assert phone.get("/")["Location"] == "/login/?next=%2F"
    ended = WebSession.objects.get(pk=phone_row["id"])
    assert ended.end_reason == "ended_by_employee"
    revoked = (settings.MCHAT_BROKER_DIR / "web-revoked").read_text()
    assert f"{ended.sid} " in revoked and phone_client_id in revoked
    # The laptop is untouched; ending it twice, or someone else's session, is a clear 404.
    assert credential(laptop).status_code == 200
    assert end(laptop, phone_row["id"]).status_code == 404
    stranger = browser(make_employee("李四"), agent=CHROME, address="10.0.0.6")
    stranger_row = stranger.get("/api/web/sessions").json()["sessions"][0]
    assert end(laptop, stranger_row["id"]).status_code == 404
    assert credential(stranger).status_code == 200

    row = AuditEvent.objects.get(action="web_session_end")
    assert (row.actor_type, row.actor_id, row.target_id) == (
        "employee",
        employee.employee_id,
        employee.employee_id,
    )
    assert row.changes["reason"] == "ended_by_employee" and row.changes["device"] == "Safari 17 · iPhone"
    assert row.changes["session_address"] == "10.8.0.9" and row.address == "10.0.0.5"
    assert row.changes["user_agent"] == CHROME


@pytest.mark.django_db
def test_ending_this_browser_is_signing_out():
    employee = make_employee()
    laptop = browser(employee, agent=CHROME, address="10.0.0.5")
    own = laptop.get("/api/web/sessions").json()["sessions"][0]
    response = end(laptop, own["id"])
    assert response.json() == {"ended": own["id"], "signed_out": True}
    assert laptop.get("/api/web/sessions").status_code == 401


@pytest.mark.django_db
def test_hr_sees_and_ends_an_employees_sign_ins_in_the_console(
    admin_client, django_capture_on_commit_callbacks
):
    employee = make_employee()
    laptop = browser(employee, agent=CHROME, address="10.0.0.5")
    phone = browser(employee, agent=IPHONE, address="10.8.0.9")

    change_page = admin_client.get(f"/admin/org/employee/{employee.pk}/change/").content.decode()
    link = f"/admin/org/websession/?q={employee.employee_id}&amp;active=yes"
    assert f'id="mchat-web-sessions" href="{link}"' in change_page  # 登录设备 on the employee's page
    page = admin_client.get("/admin/org/websession/", {"q": employee.employee_id, "active": "yes"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "Chrome 131 · Linux" in html and "Safari 17 · iPhone" in html and "10.8.0.9" in html
    assert "结束所选登录" in html
    phone_session = WebSession.objects.get(address="10.8.0.9")
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(
            "/admin/org/websession/",
            {"action": "end_sessions", "_selected_action": [phone_session.pk]},
            follow=True,
        )
    assert "已结束 1 个网页登录" in done.content.decode()
    assert credential(phone).status_code == 401
    assert credential(laptop).status_code == 200
    row = AuditEvent.objects.get(action="web_session_end")
    assert (row.actor_type, row.source, row.target_id) == ("user", "console", employee.employee_id)
    assert row.changes["reason"] == "ended_by_hr"
    # Read-only otherwise: no adding, editing or deleting sign-ins by hand.
    assert admin_client.get("/admin/org/websession/add/").status_code == 403


@pytest.mark.broker
@pytest.mark.django_db(transaction=True)
def test_an_ended_browser_loses_its_live_mqtt_connection(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    laptop, _, laptop_page = signed_in_page(web_stack, alice)
    phone, phone_credential, phone_page = signed_in_page(web_stack, alice)
    rows = laptop.http.get(f"{web_stack.base_url}/api/web/sessions", timeout=10).json()["sessions"]
    phone_row = next(row for row in rows if not row["current"])

    response = laptop.http.post(
        f"{web_stack.base_url}/api/web/sessions/{phone_row['id']}/end",
        headers={"X-CSRFToken": laptop.http.cookies["csrftoken"]},
        timeout=10,
    )
    assert response.status_code == 200, response.text

    assert phone_page.mqtt.disconnected.wait(5), "the ended browser's connection was not closed"
    assert (
        ws_connack(web_stack, alice.employee_id, phone_credential["password"], phone_credential["client_id"])
        == NOT_AUTHORIZED
    )
    assert not laptop_page.mqtt.disconnected.is_set()
    assert laptop_page.request("auth.challenge")["code"] == 0
    assert phone.credential().status_code == 401
    assert json.loads(response.text)["signed_out"] is False
