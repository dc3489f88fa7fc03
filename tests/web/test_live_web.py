"""The web client's path end to end, without a browser: sign in over HTTP, get the short-lived
MQTT credential, connect paho over WebSockets with it, chat; and every way a web session ends
(sign-out, deactivation, credential reset, web password reset) closes the live connection and
makes the old token useless."""

from __future__ import annotations

import time

import pytest

from org import services, web_auth
from org.web_tokens import token_sign
from tests.broker_harness import mqtt_client, try_connect
from tests.live import LiveClient

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

NOT_AUTHORIZED = 135


def ws_client(stack, credential: dict) -> LiveClient:
    client = mqtt_client(
        stack.live.broker.ws_port,
        credential["username"],
        credential["password"],
        credential["client_id"],
        transport="websockets",
    )
    return LiveClient(client, credential["client_id"])


def ws_connack(stack, username: str, password: str, client_id: str) -> int:
    return try_connect(stack.live.broker.ws_port, username, password, client_id, transport="websockets")


def signed_in_page(web_stack, employee):
    """A signed-in 'page': its HTTP session, its credential and its live MQTT connection."""
    session = web_stack.sign_in(employee.employee_id)
    response = session.credential()
    assert response.status_code == 200, response.text
    credential = response.json()
    return session, credential, ws_client(web_stack, credential)


def test_two_employees_chat_over_websockets_with_web_credentials(web_stack):
    alice = web_stack.make_employee(name="王小丽", email="alice@example.com")
    bob = web_stack.make_employee(name="赵大勇")
    _, alice_credential, alice_page = signed_in_page(web_stack, alice)
    _, bob_credential, bob_page = signed_in_page(web_stack, bob)

    assert alice_credential["ws_url"] == web_stack.ws_url
    assert alice_credential["client_id"].startswith(f"{alice.employee_id}_web-")
    assert alice_credential["password"] != web_stack.mqtt_passwords[alice.employee_id]
    bob_page.subscribe(f"mchat/inbox/{bob.employee_id}")

    response = alice_page.request("msg.send_private", to_employee_id=bob.employee_id, content="<b>你好</b>")
    assert response["code"] == 0, response
    inbox = f"mchat/inbox/{bob.employee_id}"
    assert bob_page.wait_for_count(inbox, 1)
    delivery = bob_page.messages(inbox)[0]
    assert delivery["from_employee_id"] == alice.employee_id
    assert delivery["content"] == "<b>你好</b>"
    assert bob_credential["client_id"] != alice_credential["client_id"]

    # A broker reload (SIGHUP, here for someone else's credential reset) re-checks every live
    # session: the pages, whose tokens password_file does not know, stay connected.
    carol = web_stack.make_employee(name="钱多多")
    services.employee_credential_reset(actor=None, employee=carol)
    web_stack.live.broker.reload()
    response = alice_page.request("msg.send_private", to_employee_id=bob.employee_id, content="还在吗")
    assert response["code"] == 0 and bob_page.wait_for_count(inbox, 2)
    assert not alice_page.mqtt.disconnected.is_set()


def test_expired_tokens_and_tokens_for_another_client_id_are_refused(web_stack, settings):
    alice = web_stack.make_employee(name="王小丽")
    session = web_stack.sign_in(alice.employee_id)
    credential = session.credential().json()
    other_id = f"{alice.employee_id}_web-00000000"
    assert ws_connack(web_stack, alice.employee_id, credential["password"], other_id) == NOT_AUTHORIZED

    sid = credential["password"].split(".")[2]
    expired = token_sign(
        key=web_auth.web_token_key(),
        username=alice.employee_id,
        client_id=credential["client_id"],
        expiry=int(time.time()) - 1,
        sid=sid,
    )
    assert ws_connack(web_stack, alice.employee_id, expired, credential["client_id"]) == NOT_AUTHORIZED
    assert ws_connack(web_stack, alice.employee_id, credential["password"], credential["client_id"]) == 0


def test_a_refresh_keeps_the_device_of_the_same_session_only(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    first = web_stack.sign_in(alice.employee_id)
    credential = first.credential().json()
    device = credential["client_id"].rsplit("_", 1)[1]
    again = first.credential(device=device).json()
    assert again["client_id"] == credential["client_id"]
    # Another sign-in cannot take over that device id.
    second = web_stack.sign_in(alice.employee_id)
    assert second.credential(device=device).json()["client_id"] != credential["client_id"]


def _assert_session_ended(web_stack, employee, credential, page) -> None:
    assert page.mqtt.disconnected.wait(5), "the live WebSockets connection was not closed"
    assert (
        ws_connack(web_stack, employee.employee_id, credential["password"], credential["client_id"])
        == NOT_AUTHORIZED
    )


def test_sign_out_closes_the_connection_and_the_old_token_is_refused(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    session, credential, page = signed_in_page(web_stack, alice)
    _, other_credential, other_page = signed_in_page(web_stack, alice)  # another browser

    response = session.sign_out()
    assert response.status_code == 302 and response.headers["Location"] == "/login/"

    _assert_session_ended(web_stack, alice, credential, page)
    assert session.credential().status_code == 401
    # Only that sign-in ended: the other browser stays connected and may reconnect.
    assert not other_page.mqtt.disconnected.is_set()
    assert other_page.request("auth.challenge")["code"] == 0
    assert (
        ws_connack(web_stack, alice.employee_id, other_credential["password"], other_credential["client_id"])
        == 0
    )


def test_deactivation_ends_the_web_session(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    session, credential, page = signed_in_page(web_stack, alice)

    services.employee_deactivate(actor=None, employee_id=alice.employee_id)

    _assert_session_ended(web_stack, alice, credential, page)
    assert session.credential().status_code == 401


def test_credential_reset_ends_the_web_session(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    session, credential, page = signed_in_page(web_stack, alice)

    services.employee_credential_reset(actor=None, employee=alice)

    _assert_session_ended(web_stack, alice, credential, page)
    assert session.credential().status_code == 401


def test_web_password_reset_by_hr_ends_the_web_session(web_stack):
    alice = web_stack.make_employee(name="王小丽")
    session, credential, page = signed_in_page(web_stack, alice)

    web_auth.web_password_set(employee=alice)

    _assert_session_ended(web_stack, alice, credential, page)
    assert session.credential().status_code == 401


@pytest.fixture
def built_client(tmp_path, settings):
    """A stand-in for web/dist, set before web_stack starts (request it first)."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(
        '<!doctype html><script type="module" src="/static/web/assets/app.js"></script>'
    )
    (dist / "assets" / "app.js").write_text("console.log('mchat');\n")
    settings.MCHAT_WEB_DIST_DIR = dist
    return dist


def test_the_web_server_serves_the_shell_and_its_static_files(built_client, web_stack):
    alice = web_stack.make_employee(name="王小丽")
    page = web_stack.sign_in(alice.employee_id)
    shell = page.http.get(f"{web_stack.base_url}/c/private/{alice.employee_id}", timeout=10)
    assert shell.status_code == 200 and "/static/web/assets/app.js" in shell.text
    policy = shell.headers["Content-Security-Policy"]
    assert web_stack.ws_url in policy and "'unsafe-inline'" not in policy
    asset = page.http.get(f"{web_stack.base_url}/static/web/assets/app.js", timeout=10)
    assert asset.status_code == 200 and asset.text == "console.log('mchat');\n"
    css = page.http.get(f"{web_stack.base_url}/static/org/web-signin.css", timeout=10)
    assert css.status_code == 200 and ".card" in css.text
