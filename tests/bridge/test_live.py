"""The foundation end to end: real Mosquitto with the plugin, a real bridge, real clients."""

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.client import BridgeClient
from bridge.gathering import GatheringSocket
from org import services
from org.models import AuthChallenge

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_admin_binds_and_gets_a_challenge_over_mqtt(live):
    admin, password = live.issue("演示管理员", org_admin=True)
    device = live.connect(admin, password, device="laptop")

    bound = device.request("auth.bind", seq_id="bb0e8400", employee_id=admin.employee_id)
    assert bound == {"seq_id": "bb0e8400", "code": 0, "message": "ok", "data": {}}

    challenge = device.request("auth.challenge", seq_id="cc0e8400")
    assert challenge["code"] == 0
    assert set(challenge["data"]) == {"challenge_id", "token", "expires_at"}
    # Answers went out through the bridge's gathering socket (paho still builds it for us).
    assert isinstance(live.bridge.client.socket(), GatheringSocket)


def test_bad_input_over_mqtt_gets_400_and_the_bridge_keeps_serving(live):
    alice, password = live.issue("Alice")
    device = live.connect(alice, password)
    for seq_id, raw in [("a", b"\xff"), ("b", b"[]"), ("c", b'{"action": 1}'), ("d", b'{"action":"x.y"}')]:
        device.publish_request(seq_id, raw)
        assert device.response(seq_id)["code"] == 400
    assert device.request("auth.challenge")["code"] == 0


def test_a_new_credential_works_and_a_reset_one_is_cut_off(live):
    bob, password = live.issue("Bob")
    device = live.connect(bob, password)
    assert device.request("auth.challenge")["code"] == 0
    services.employee_credential_reset(actor=None, employee=bob)
    assert device.mqtt.disconnected.wait(3), "the old credential's session must be disconnected"
    with pytest.raises(ConnectionRefusedError):
        live.connect(bob, password, device="again")


def test_requests_queued_while_the_bridge_is_down_are_served_after_restart(live):
    carol, password = live.issue("Carol")
    device = live.connect(carol, password)
    live.stop_bridge()
    live.start_bridge(instance="restart", keep_session=True)  # a persistent session exists now
    live.stop_bridge()
    for n in range(5):
        device.publish_request(f"q{n}", json.dumps({"action": "auth.challenge"}).encode())
    live.start_bridge(instance="restart")
    answers = [device.response(f"q{n}") for n in range(5)]
    assert [a["code"] for a in answers] == [0] * 5
    assert AuthChallenge.objects.count() == 5


def test_two_shared_bridges_answer_each_request_exactly_once(live):
    live.stop_bridge()
    dave, password = live.issue("Dave")
    device = live.connect(dave, password)
    live.start_bridge(instance="s1", shared=True)
    second = BridgeClient(instance="s2", shared=True, keep_session=False)
    stop = threading.Event()
    thread = threading.Thread(target=second.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert second.connected.wait(10)
        for n in range(20):
            device.publish_request(f"s{n}", json.dumps({"action": "auth.challenge"}).encode())
        for n in range(20):
            assert device.response(f"s{n}")["code"] == 0
        assert AuthChallenge.objects.count() == 20
        assert len(device.mqtt.messages) == 20  # no duplicate answers
    finally:
        stop.set()
        thread.join(10)


def test_requests_are_read_without_paho_objects_unless_they_carry_properties(live, monkeypatch):
    # A request without MQTT 5 properties is read by GatheringClient itself; one with
    # properties (a user property here) goes through paho's own reading, and is answered too.
    paho_read = []
    paho_handler = mqtt.Client._handle_publish
    monkeypatch.setattr(
        mqtt.Client,
        "_handle_publish",
        lambda self: (self is live.bridge.client and paho_read.append(1)) or paho_handler(self),
    )
    admin, password = live.issue("演示管理员", org_admin=True)
    device = live.connect(admin, password, device="laptop")
    assert device.request("auth.challenge", seq_id="plain")["code"] == 0
    assert paho_read == []

    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = ("trace", "abc")
    topic = f"mchat/msg/req/{device.client_id}/with-props"
    device.mqtt.publish(topic, b'{"action":"auth.challenge"}', qos=1, properties=properties)
    assert device.response("with-props")["code"] == 0
    assert len(paho_read) == 1


def test_the_bridge_sees_its_publishes_acknowledged_with_or_without_subscribers(live, monkeypatch):
    # PUBACKs come back with a packet id only, or with "no matching subscribers" (MQTT 5);
    # the bridge's client takes both without paho's per-packet objects (GatheringClient).
    slow_path = []
    paho_handler = mqtt.Client._handle_pubackcomp
    monkeypatch.setattr(
        mqtt.Client, "_handle_pubackcomp", lambda self, cmd: slow_path.append(cmd) or paho_handler(self, cmd)
    )
    admin, password = live.issue("演示管理员", org_admin=True)
    device = live.connect(admin, password, device="laptop")
    device.subscribe(f"mchat/inbox/{admin.employee_id}")
    heard = live.bridge.publish(f"mchat/inbox/{admin.employee_id}", b'{"n":1}').result(3)
    unheard = live.bridge.publish("mchat/inbox/emp_nobody_000", b'{"n":2}').result(3)
    for info in (heard, unheard):
        info.wait_for_publish(3)
        assert info.is_published()
    assert live.bridge.client._out_messages == {}  # nothing left waiting for its PUBACK
    assert slow_path == []
