"""The physical limit: a trivial responder with no database.

Logs in as the bridge user, subscribes to mchat/msg/req/# (QoS 1) like the bridge, and answers
every request on the mirrored response topic with a fixed code-0 envelope. One paho client,
its network loop in the main thread, TCP_NODELAY: the bridge's own wiring minus the dispatcher.

    BENCH_ECHO_PASSWORD=... python -m bench.echo PORT USERNAME
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REQ = "mchat/msg/req/"
RESP = "mchat/msg/resp/"


def main() -> None:
    port, username = int(sys.argv[1]), sys.argv[2]
    password = os.environ["BENCH_ECHO_PASSWORD"]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{username}_echo", protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)

    def nodelay(c, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        c.subscribe(REQ + "#", qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        print("ready", flush=True)

    def on_message(c, userdata, message) -> None:
        rest = message.topic[len(REQ) :]
        seq_id = rest.rsplit("/", 1)[-1]
        body = json.dumps({"seq_id": seq_id, "code": 0, "message": "ok", "data": {}}, separators=(",", ":"))
        c.publish(RESP + rest, body, qos=1)

    client.on_socket_open = nodelay
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_forever()


if __name__ == "__main__":
    main()
