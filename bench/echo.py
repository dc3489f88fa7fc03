"""The physical limit: a trivial responder with no database.

Logs in as the bridge user, subscribes to mchat/msg/req/# (QoS 1) like the bridge, and answers
every request on the mirrored response topic with a fixed code-0 envelope. The bridge's own
wiring minus the dispatcher: its paho client (bridge.gathering.GatheringClient, the same fast
read, publish and acknowledgement), one thread running the network loop, what a pass writes
leaving in one send, TCP_NODELAY.

    BENCH_ECHO_PASSWORD=... python -m bench.echo PORT USERNAME
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.gathering import GatheringClient

REQ = "mchat/msg/req/"
RESP = "mchat/msg/resp/"


def main() -> None:
    port, username = int(sys.argv[1]), sys.argv[2]
    password = os.environ["BENCH_ECHO_PASSWORD"]
    client = GatheringClient(
        CallbackAPIVersion.VERSION2, client_id=f"{username}_echo", protocol=mqtt.MQTTv5, manual_ack=True
    )
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    state = {"stop": False}

    def nodelay(c, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        c.subscribe(REQ + "#", qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        print("ready", flush=True)

    def answer(topic: str, payload: bytes, mid: int, qos: int) -> None:
        rest = topic[len(REQ) :]
        seq_id = rest.rsplit("/", 1)[-1]
        body = json.dumps({"seq_id": seq_id, "code": 0, "message": "ok", "data": {}}, separators=(",", ":"))
        client.publish(RESP + rest, body.encode(), qos=1)
        if qos:
            client.ack(mid, qos)

    client.on_socket_open = nodelay
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_plain_message = answer
    client.on_message = lambda c, u, m: answer(m.topic, m.payload, m.mid, m.qos)
    signal.signal(signal.SIGTERM, lambda *_: state.update(stop=True))
    client.connect("127.0.0.1", port, keepalive=30)
    while not state["stop"]:
        sock = client.socket()
        if sock is None:
            break
        want_write = [sock] if client.want_write() or sock.unsent() else []
        if not sock.pending():
            try:
                select.select([sock], want_write, [], 1.0)
            except InterruptedError:
                continue
        client.loop_read_buffered()
        if client.socket() is not None:
            if client.want_write():
                client.loop_write()
            client.loop_misc()
            sock.flush()
    client.disconnect()


if __name__ == "__main__":
    main()
