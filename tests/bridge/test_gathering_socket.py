"""The bridge's socket (bridge.client.GatheringSocket): paho's many small reads served from
one recv, its writes gathered until the loop flushes them, failures reported to paho. And
the client on it (GatheringClient), which reads the usual PUBLISH without paho's objects."""

from __future__ import annotations

import socket
import struct
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.gathering import GatheringClient, GatheringSocket


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(2)
    yield GatheringSocket(ours), theirs
    theirs.close()


def test_small_reads_come_from_one_recv_and_pending_counts_the_rest(pair):
    sock, peer = pair
    with pytest.raises(BlockingIOError):
        sock.recv(1)  # nothing yet: as a non-blocking socket says
    peer.sendall(b"\x30\x05hello\x40\x02")
    assert sock.recv(1) == b"\x30"
    assert sock.pending() == 8  # select() cannot see these: the loop asks pending()
    assert sock.recv(1) == b"\x05"
    assert sock.recv(5) == b"hello"
    assert sock.recv(10) == b"\x40\x02"  # no more than was received
    assert sock.pending() == 0


def test_writes_wait_for_flush_and_leave_in_one_piece(pair):
    sock, peer = pair
    assert sock.send(b"one") == 3 and sock.send(b"two") == 3
    assert sock.unsent() == 6
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(10)  # nothing written before the flush
    sock.flush()
    assert sock.unsent() == 0
    peer.settimeout(2)
    assert peer.recv(10) == b"onetwo"


def test_what_the_peer_cannot_take_yet_stays_for_the_next_flush(pair):
    sock, peer = pair
    big = b"x" * (8 << 20)
    sock.send(big)
    sock.flush()
    assert 0 < sock.unsent() < len(big)  # the kernel took what it could
    received = bytearray()
    while len(received) < len(big):
        received += peer.recv(1 << 20)
        sock.flush()
    assert bytes(received) == big and sock.unsent() == 0


def test_a_failed_flush_is_reported_on_the_next_read_and_write(pair):
    sock, peer = pair
    peer.close()
    sock.send(b"lost")
    sock.flush()  # the peer is gone: the socket refuses it
    assert sock.unsent() == 4
    with pytest.raises(OSError):
        sock.recv(1)  # paho's read turns this into a lost connection
    with pytest.raises(OSError):
        sock.send(b"x")


def test_close_sends_what_was_gathered(pair):
    sock, peer = pair
    sock.send(b"\xe0\x00")  # paho closes right after queueing DISCONNECT
    sock.close()
    assert peer.recv(10) == b"\xe0\x00"


def _publish_packet(topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 7, properties: bytes = b"\0"):
    body = (
        struct.pack("!H", len(topic))
        + topic
        + (struct.pack("!H", mid) if qos else b"")
        + properties
        + payload
    )
    assert len(body) < 128
    return bytes([0x30 | qos << 1, len(body)]) + body


@pytest.fixture
def reader():
    """A GatheringClient reading what its peer sends; (client, peer, plain, paho's)."""
    ours, theirs = socket.socketpair()
    client = GatheringClient(
        mqtt.CallbackAPIVersion.VERSION2, client_id="emp_x_dev", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client._sock = GatheringSocket(ours)
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    plain, paho = [], []
    client.on_plain_message = lambda *parts: plain.append(parts)
    client.on_message = lambda c, u, message: paho.append(
        (message.topic, message.payload, message.mid, message.qos)
    )
    yield client, theirs, plain, paho
    theirs.close()
    ours.close()


def test_a_plain_publish_is_handed_over_as_its_parts(reader):
    client, peer, plain, paho = reader
    peer.sendall(
        _publish_packet(b"mchat/msg/req/a_b/1", b'{"x":1}') + _publish_packet(b"t/0", b"zero", qos=0)
    )
    client._packet_read()
    client._packet_read()
    assert plain == [("mchat/msg/req/a_b/1", b'{"x":1}', 7, 1), ("t/0", b"zero", 0, 0)]
    assert type(plain[0][1]) is bytes and paho == []


def test_loop_read_buffered_takes_what_the_socket_read_ahead(reader):
    client, peer, plain, _ = reader
    peer.sendall(b"".join(_publish_packet(b"t/%d" % i, b"x", mid=i + 1) for i in range(5)))
    client.loop_read()  # paho's: as many packets as it has messages in flight, at least one
    assert len(plain) == 1 and client._sock.pending()  # the rest sits in the socket's buffer
    assert client.loop_read_buffered() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [p[0] for p in plain] == [f"t/{i}" for i in range(5)] and not client._sock.pending()


def test_a_publish_with_properties_or_qos_2_is_paho_s(reader):
    client, peer, plain, paho = reader
    user_property = b"\x26\x00\x01k\x00\x01v"  # UserProperty k=v
    peer.sendall(_publish_packet(b"t/p", b"props", properties=bytes([len(user_property)]) + user_property))
    client._packet_read()
    peer.sendall(_publish_packet(b"t/2", b"two", qos=2, mid=9))
    client._packet_read()
    assert plain == []
    assert paho == [("t/p", b"props", 7, 1)]  # QoS 2 waits for PUBREL, as paho does it
    assert 9 in client._in_messages


def test_a_malformed_publish_is_left_to_paho(reader):
    client, peer, plain, paho = reader
    peer.sendall(bytes([0x32, 4]) + struct.pack("!H", 10) + b"ab")  # topic longer than the packet
    assert client._packet_read() == mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL  # paho's verdict
    assert plain == [] and paho == []


class _Sink:
    """A connected socket that takes everything (the bytes stay in the GatheringSocket)."""

    def send(self, data) -> int:
        return len(data)

    def sendall(self, data) -> None:
        pass

    def settimeout(self, seconds) -> None:
        pass

    def close(self) -> None:
        pass


def _connected(client_class):
    client = client_class(mqtt.CallbackAPIVersion.VERSION2, client_id="emp_x_dev", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client._sock = GatheringSocket(_Sink())
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    return client


def test_a_usual_publish_is_packed_as_paho_packs_it_and_waits_for_its_puback():
    ours, pahos = _connected(GatheringClient), _connected(mqtt.Client)
    for client in (ours, pahos):
        for payload, retain in (
            (b'{"a":1}', False),
            (b"", False),
            (b"x" * 300, True),
            (b"y" * 20_000, False),
        ):
            client.publish("mchat/inbox/emp_é", payload, qos=1, retain=retain)
    assert ours._sock._out == pahos._sock._out
    assert sorted(ours._out_messages) == [1, 2, 3, 4] and ours._inflight_messages == 4
    info = ours._out_messages[1].info
    ours._in_packet["packet"] = bytearray(b"\x00\x01")  # the broker's PUBACK for packet 1
    ours._handle_pubackcomp("PUBACK")
    assert info.is_published() and sorted(ours._out_messages) == [2, 3, 4]


def test_an_acknowledgement_is_packed_as_paho_packs_it():
    ours, pahos = _connected(GatheringClient), _connected(mqtt.Client)
    for client in (ours, pahos):
        client._manual_ack = True
        for mid in (1, 255, 256, 65535):
            assert client.ack(mid, 1) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert (
        ours._sock._out
        == pahos._sock._out
        == b"".join(bytes([0x40, 2]) + struct.pack("!H", mid) for mid in (1, 255, 256, 65535))
    )


def test_an_unusual_acknowledgement_is_paho_s(monkeypatch):
    client = _connected(GatheringClient)
    client._manual_ack = True
    taken = []
    paho_ack = mqtt.Client.ack
    monkeypatch.setattr(mqtt.Client, "ack", lambda self, *a: taken.append(a) or paho_ack(self, *a))
    client.ack(5, 2)  # QoS 2: PUBCOMP
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTION_LOST
    client.ack(6, 1)
    assert taken == [(5, 2), (6, 1)]


def test_an_unusual_publish_is_paho_s(monkeypatch):
    client = _connected(GatheringClient)
    taken = []
    paho_publish = mqtt.Client.publish
    monkeypatch.setattr(
        mqtt.Client, "publish", lambda self, *a, **k: taken.append(a) or paho_publish(self, *a, **k)
    )
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = 60
    client.publish("t/0", b"zero", qos=0)
    client.publish("t/p", b"props", qos=1, properties=properties)
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTION_LOST
    client.publish("t/later", b"offline", qos=1)  # kept by paho for after the reconnect
    assert [a[0] for a in taken] == ["t/0", "t/p", "t/later"]
    with pytest.raises(ValueError):
        _connected(GatheringClient).publish("t/+", b"wildcard", qos=1)


@pytest.mark.django_db
def test_a_slow_batch_is_logged(caplog, settings, monkeypatch):
    from bridge.client import BridgeClient

    settings.MCHAT_BRIDGE_SLOW_MS = 20
    bridge = BridgeClient(instance="slowtest", shared=False)  # never connected: no acks are sent
    monkeypatch.setattr(bridge.dispatcher, "handle_batch", lambda requests: time.sleep(0.05) or [])
    bridge._pending = [("mchat/msg/req/emp_alice_001_d1/s1", b"{}", 1, 1, 0)]
    bridge._serve_pending()
    assert "slow batch: 1 requests served in" in caplog.text
    caplog.clear()
    monkeypatch.setattr(bridge.dispatcher, "handle_batch", lambda requests: [])
    bridge._pending = [("mchat/msg/req/emp_alice_001_d1/s2", b"{}", 2, 1, 0)]
    bridge._serve_pending()
    assert "slow batch" not in caplog.text


def test_whole_packets_are_taken_in_one_piece_and_a_partial_one_is_left_for_paho(pair):
    sock, peer = pair
    with pytest.raises(BlockingIOError):
        sock.take_packet()  # nothing has arrived
    body = b"x" * 200  # a remaining length of two bytes (200 = 0xC8 0x01)
    peer.sendall(b"\x40\x02\x00\x07" + b"\x32\xc8\x01" + body + b"\x40\x02\x00")
    assert sock.take_packet() == (0x40, bytearray(b"\x00\x07"))
    assert sock.take_packet() == (0x32, bytearray(body))
    assert sock.take_packet() is None  # the last PUBACK is not whole yet
    assert sock.pending() == 3  # and stays for paho's byte by byte read
    peer.sendall(b"\x08")
    assert sock.recv(3) == b"\x40\x02\x00"
    assert sock.take_packet() is None  # one byte: its remaining length has not arrived


def test_the_client_reads_buffered_packets_whole_as_paho_would(pair):
    sock, peer = pair
    client = GatheringClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    client._sock = sock
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    received = []
    client.on_plain_message = lambda topic, payload, mid, qos: received.append((topic, payload, mid, qos))
    topic = b"mchat/msg/req/emp_a_d1/s1"

    def publish(mid: int, payload: bytes) -> bytes:
        rest = struct.pack("!H", len(topic)) + topic + struct.pack("!HB", mid, 0) + payload
        return bytes([0x32, len(rest)]) + rest

    peer.sendall(publish(1, b'{"a":1}') + publish(2, b'{"b":2}') + publish(3, b"{}")[:5])
    assert client.loop_read_buffered() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert received == [
        (topic.decode(), b'{"a":1}', 1, 1),
        (topic.decode(), b'{"b":2}', 2, 1),
    ]
    peer.sendall(publish(3, b"{}")[5:])  # the rest of the third: paho finishes what it began
    client.loop_read()
    assert received[-1] == (topic.decode(), b"{}", 3, 1)
