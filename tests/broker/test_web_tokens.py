"""The plugin's check of the web client's short-lived MQTT credentials (org.web_tokens), with a
real Mosquitto: a token connects over WebSockets (or TCP) only for its own user and client id,
until its expiry, and not once its web session is listed as ended; ending a session disconnects
its live connections without a SIGHUP."""

from __future__ import annotations

import time

import pytest

from bridge.acl import ACL_TEXT
from org.web_tokens import render_revoked, token_sign, token_verify, web_secret_ensure
from tests.broker_harness import BrokerHarness, mqtt_client, try_connect, wait_until

pytestmark = pytest.mark.broker

USERS = {"emp_a": "secret-a", "emp_b": "secret-b", "mchat-bridge": "secret-bridge"}
NOT_AUTHORIZED = 135
SID = "0123456789abcdef0123456789abcdef"
OTHER_SID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def broker(tmp_path):
    harness = BrokerHarness(
        tmp_path / "mosquitto", users=USERS, acl=ACL_TEXT.format(bridge_user="mchat-bridge")
    )
    yield harness
    harness.stop()


@pytest.fixture
def key(broker):
    return web_secret_ensure(broker.paths.web_secret)


def token(key, username="emp_a", client_id="emp_a_web-0a1b2c3d", *, ttl=300, sid=SID):
    return token_sign(key=key, username=username, client_id=client_id, expiry=int(time.time()) + ttl, sid=sid)


def ws_connect(broker, username, password, client_id):
    return try_connect(broker.ws_port, username, password, client_id, transport="websockets")


def test_the_secret_file_is_private_and_stable(broker, key):
    assert broker.paths.web_secret.stat().st_mode & 0o777 == 0o600
    assert web_secret_ensure(broker.paths.web_secret) == key


def test_a_token_connects_over_websockets_and_tcp(broker, key):
    assert ws_connect(broker, "emp_a", token(key), "emp_a_web-0a1b2c3d") == 0
    assert try_connect(broker.port, "emp_a", token(key), "emp_a_web-0a1b2c3d") == 0
    assert (
        token_verify(
            key=key, token=token(key), username="emp_a", client_id="emp_a_web-0a1b2c3d", now=time.time()
        )
        == SID
    )


def test_the_device_password_works_on_the_websockets_listener_too(broker):
    assert ws_connect(broker, "emp_a", USERS["emp_a"], "emp_a_web-0a1b2c3d") == 0
    assert ws_connect(broker, "emp_a", USERS["emp_b"], "emp_a_web-0a1b2c3d") == NOT_AUTHORIZED
    # The client-id binding holds on this listener as on TCP.
    assert ws_connect(broker, "emp_a", USERS["emp_a"], "emp_b_web-0a1b2c3d") == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "case",
    ["expired", "other-client-id", "other-user", "tampered", "other-key", "not-a-web-device", "malformed"],
)
def test_a_token_is_refused_unless_valid_for_this_user_and_client_id(broker, key, case):
    username, client_id = "emp_a", "emp_a_web-0a1b2c3d"
    password = token(key)
    if case == "expired":
        password = token(key, ttl=-1)
    elif case == "other-client-id":
        client_id = "emp_a_web-99999999"
    elif case == "other-user":
        username, client_id = "emp_b", "emp_b_web-0a1b2c3d"
        password = token(key, "emp_a", "emp_b_web-0a1b2c3d")
    elif case == "tampered":
        password = password[:-1] + ("0" if password[-1] != "0" else "1")
    elif case == "other-key":
        password = token(b"another-key-of-32-bytes-long-xxx")
    elif case == "not-a-web-device":
        client_id = "emp_a_phone"
        password = token(key, client_id=client_id)
    elif case == "malformed":
        password = "v1.x." + password
    assert ws_connect(broker, username, password, client_id) == NOT_AUTHORIZED
    assert "refused web token" in broker.log()


def test_an_ended_session_is_refused_and_its_live_connection_closed_without_sighup(broker, key):
    cid = "emp_a_web-0a1b2c3d"
    live = mqtt_client(broker.ws_port, "emp_a", token(key), cid, transport="websockets")
    other = mqtt_client(
        broker.ws_port,
        "emp_a",
        token(key, client_id="emp_a_web-11112222", sid=OTHER_SID),
        "emp_a_web-11112222",
        transport="websockets",
    )
    device = mqtt_client(broker.port, "emp_a", USERS["emp_a"], "emp_a_phone")
    try:
        broker.paths.web_revoked.write_text(render_revoked([(SID, int(time.time()) + 300, [cid])]))
        assert live.disconnected.wait(2.0)
        assert ws_connect(broker, "emp_a", token(key), cid) == NOT_AUTHORIZED
        assert "session ended" in broker.log()
        # Another session of the same employee and its device connections are untouched.
        assert not other.disconnected.is_set() and not device.disconnected.is_set()
        fresh = "emp_a_web-33334444"
        assert ws_connect(broker, "emp_a", token(key, client_id=fresh, sid=OTHER_SID), fresh) == 0
        # A later change of the file does not kick the same client ids again.
        again = mqtt_client(broker.ws_port, "emp_a", USERS["emp_a"], cid, transport="websockets")
        broker.paths.web_revoked.write_text(
            render_revoked([(SID, int(time.time()) + 300, [cid]), (OTHER_SID, int(time.time()) + 300, [])])
        )
        assert wait_until(
            lambda: (
                ws_connect(broker, "emp_a", token(key, client_id=fresh, sid=OTHER_SID), fresh)
                == NOT_AUTHORIZED
            )
        )
        assert not again.disconnected.is_set()
        again.close()
        assert "Reloading config." not in broker.log()
    finally:
        for client in (live, other, device):
            client.close()
