"""The bridge's MQTT connection at the packet level: paho, minus the per-packet objects it
builds on the usual path. No Django here, so the benchmark's clients (bench.swarm) run the same
code as the bridge.

This is a fork of parts of paho-mqtt 2.2 that leans on its internals: private attributes and
methods of `paho.mqtt.client.Client` (`_in_packet`, `_out_messages`, `_handle_publish`...) and
module-level names (`_ConnectionState`, `mqtt_ms_wait_for_puback`...). paho may change any of
them in any release, so this module refuses to import on another paho version (requirements.txt
pins `>=2.2,<2.3`); tests/bridge/test_gathering_paho.py checks that every private member used
here exists in the installed paho. Moving to a new paho: read its client.py against every
`self._...` and `mqtt._...` below, then widen PAHO_SERIES.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable

import paho.mqtt
import paho.mqtt.client as mqtt

PAHO_SERIES = "2.2"
"""The paho-mqtt release series whose internals this module was written against."""

if paho.mqtt.__version__.split(".")[:2] != PAHO_SERIES.split("."):
    raise ImportError(
        f"bridge.gathering relies on paho-mqtt {PAHO_SERIES}.x internals, but paho-mqtt "
        f"{paho.mqtt.__version__} is installed: install paho-mqtt>={PAHO_SERIES},<2.3 "
        "(requirements.txt), or port bridge/gathering.py to the new version first"
    )


class GatheringSocket:
    """The bridge connection's socket as paho sees it: reads served from one large recv, and
    writes gathered until the bridge's loop calls `flush`.

    paho reads each packet with three or more recv calls (the header byte, each byte of the
    length, the body) and writes each packet with its own send. With this socket a batch's
    answers, deliveries and acknowledgements leave in one write, and the broker reads them in
    a few TCP segments instead of one per packet.
    """

    READ_SIZE = 256 * 1024

    def __init__(self, sock) -> None:
        self._sock = sock
        self._in = b""
        self._in_at = 0
        self._out = bytearray()
        self._failed: OSError | None = None

    def recv(self, size: int) -> bytes:
        if self._failed is not None:
            raise self._failed  # a failed flush: paho's read reports the lost connection
        if self._in_at >= len(self._in):
            data = self._sock.recv(max(size, self.READ_SIZE))
            if len(data) <= size:
                return data
            self._in, self._in_at = data, 0
        start, self._in_at = self._in_at, min(self._in_at + size, len(self._in))
        return self._in[start : self._in_at]

    def take_packet(self) -> tuple[int, bytearray] | None:
        """A whole MQTT packet from the bytes received (one recv first if none are left):
        (its first byte, its body after the remaining length). BlockingIOError when nothing
        has arrived; None when what is there is not a whole packet, or the socket has
        something else to say (closed, failed, TLS): paho's own read then takes what there
        is, byte by byte, and reports it its way."""
        if self._failed is not None:
            return None
        data, at = self._in, self._in_at
        if at >= len(data):
            try:
                data, at = self._sock.recv(self.READ_SIZE), 0
            except BlockingIOError:
                raise
            except OSError:  # TLS wants to read or write first, or the connection failed
                return None  # paho's recv asks again and reports it
            if not data:
                return None  # closed: paho's recv reads the end again
            self._in, self._in_at = data, 0
        end = len(data)
        length, shift, pos = 0, 0, at + 1
        while True:  # the remaining length: 7 bits a byte, at most 4 bytes
            if pos >= end or shift > 21:
                return None  # not all here yet (or malformed: paho says so)
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
        if pos + length > end:
            return None
        self._in_at = pos + length
        return data[at], bytearray(data[pos : pos + length])

    def pending(self) -> int:
        """Bytes received and not yet taken by paho, which select() cannot see."""
        inner = getattr(self._sock, "pending", None)  # TLS keeps its own
        return len(self._in) - self._in_at + (inner() if inner else 0)

    def send(self, data) -> int:
        if self._failed is not None:
            raise self._failed
        self._out += data
        return len(data)

    def unsent(self) -> int:
        return len(self._out)

    def flush(self) -> None:
        """Write what was gathered, as far as the socket takes it now; the rest waits for the
        loop's next pass (select() then waits for the socket to take more)."""
        while self._out and self._failed is None:
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return  # TLS too may have to wait for the socket before it can write
            except OSError as exc:
                self._failed = exc
                return
            del self._out[:sent]

    def close(self) -> None:
        # paho closes right after queueing its DISCONNECT: send what was gathered first.
        if self._out and self._failed is None:
            try:
                self._sock.settimeout(1.0)
                self._sock.sendall(self._out)
            except OSError:
                pass
        self._out.clear()
        self._sock.close()

    def __getattr__(self, name: str):  # fileno, setblocking, setsockopt...: the socket's own
        return getattr(self._sock, name)


_OWN_LOOP_ONLY = (
    "GatheringClient gathers its writes until its socket's flush() is called: paho's "
    "loop_start()/loop_forever() never call it, so nothing would be sent. Run the loop "
    "yourself (loop_read_buffered, loop_write, loop_misc, then sock.flush()), as "
    "bridge.client.BridgeClient and bench.swarm do"
)


class GatheringClient(mqtt.Client):
    """A paho client on a GatheringSocket; only for a loop that calls its socket's flush()
    (paho's own loop_start()/loop_forever() are refused: they never flush).

    Five of paho's steps are taken without its objects when a packet is the usual one, as
    nearly every packet of the bridge is:
    - a packet already whole in the socket's buffer is taken in one piece
      (GatheringSocket.take_packet) instead of paho's three or more recv calls and their
      bookkeeping, then handled by paho's dispatch as usual;
    - a PUBLISH at QoS 0 or 1 without properties goes to `on_plain_message` as (topic,
      payload, packet id, QoS), if that is set (and acknowledgements are manual): paho builds
      a Properties object for every MQTT 5 PUBLISH, and with its MQTTMessage that was nine
      tenths of the time it took to read one;
    - the broker's PUBACK (a packet id, maybe a reason code, no properties) is taken without
      paho's ReasonCode and Properties objects: three come back per message sent, and
      building those objects was a tenth of the bridge's time;
    - a QoS 1 publish without properties, while connected and with nothing of paho's
      waiting to be written, is packed here and gathered at once: paho's own path (packet
      dict, queue, log call, write loop) took twice as long, three times per message;
    - so is the PUBACK of a received QoS 1 message (`ack`), on the same conditions.
    Anything else (properties, QoS 0 or 2, an on_publish callback, an in-flight or queue
    limit) goes through paho as usual.
    """

    on_plain_message: Callable[[str, bytes, int, int], None] | None = None

    def loop_start(self):
        raise RuntimeError(_OWN_LOOP_ONLY)

    def loop_forever(self, *args, **kwargs):
        raise RuntimeError(_OWN_LOOP_ONLY)

    def _create_socket(self):
        return GatheringSocket(super()._create_socket())

    def loop_read_buffered(self):
        """paho's loop_read, then on while the socket holds bytes it read ahead and paho has
        not taken: select() cannot see those, so a loop that waits on it would leave them."""
        sock = self._sock
        rc = self.loop_read()
        while (
            rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
            and sock is not None
            and self._sock is sock
            and sock.pending()
        ):
            rc = self.loop_read()
        return rc

    def _packet_read(self):
        if self._in_packet["command"] != 0 or not isinstance(self._sock, GatheringSocket):
            return super()._packet_read()  # a packet paho has begun, or not our socket
        try:
            whole = self._sock.take_packet()
        except BlockingIOError:
            return mqtt.MQTTErrorCode.MQTT_ERR_AGAIN  # as paho's read of the first byte says
        if whole is None:
            return super()._packet_read()
        command, body = whole
        # What paho's own read leaves in _in_packet once a packet is whole, then its steps.
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": body,
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except mqtt.MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _handle_publish(self):
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if self.on_plain_message is None or qos == 2 or not self._manual_ack or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        try:
            (length,) = struct.unpack_from("!H", packet)
            at, mid = 2 + length, 0
            if qos:
                (mid,) = struct.unpack_from("!H", packet, at)
                at += 2
            plain = packet[at] == 0  # the properties' length
            topic = packet[2 : 2 + length].decode()
        except (struct.error, IndexError, UnicodeDecodeError):
            return super()._handle_publish()  # malformed: paho reports it its own way
        if not plain:
            return super()._handle_publish()
        self.on_plain_message(topic, bytes(packet[at + 1 :]), mid, qos)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish(self, topic, payload=None, qos=0, retain=False, properties=None):
        usual = (
            qos == 1
            and properties is None
            and isinstance(payload, bytes)
            and self._usual_write()
            and not self._max_inflight_messages
            and not self._max_queued_messages
            and self._protocol == mqtt.MQTTv5
        )
        if not usual:
            return super().publish(topic, payload, qos, retain, properties)
        topic_bytes = topic.encode()
        self._raise_for_invalid_topic(topic_bytes)  # wildcards, length: as paho refuses them
        mid = self._mid_generate()
        message = mqtt.MQTTMessage(mid, topic_bytes)
        message.timestamp = mqtt.time_func()
        message.payload, message.qos, message.retain, message.dup = payload, 1, retain, False
        message.state = mqtt.mqtt_ms_wait_for_puback
        with self._out_message_mutex:
            if mid in self._out_messages:  # 65,535 unacknowledged: paho's answer
                message.info.rc = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
                return message.info
            self._out_messages[mid] = message  # kept until its PUBACK; resent after a reconnect
            self._inflight_messages += 1
        # Fixed header, topic, packet id, no properties, payload.
        length = 2 + len(topic_bytes) + 2 + 1 + len(payload)
        header = bytearray((0x32 | bool(retain),))
        self._pack_remaining_length(header, length)
        # A lost connection: paho's next read says so, and a reconnect resends it.
        self._gather(
            header + struct.pack("!H", len(topic_bytes)) + topic_bytes + struct.pack("!HB", mid, 0) + payload
        )
        return message.info

    def ack(self, mid, qos):
        if not (qos == 1 and self._manual_ack and self._usual_write()):
            return super().ack(mid, qos)
        # paho's PUBACK: a packet id, no reason code (success), no properties.
        self._gather(struct.pack("!BBH", mqtt.PUBACK, 2, mid))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _usual_write(self) -> bool:
        """Connected, and nothing of paho's waiting to be written before what we add."""
        return (
            self._state == mqtt._ConnectionState.MQTT_CS_CONNECTED
            and self._sock is not None
            and not self._out_packet
        )

    def _gather(self, packet: bytes) -> None:
        try:
            self._sock.send(packet)
        except OSError:
            pass  # the connection is lost: paho's next read says so
        self._last_msg_out = mqtt.time_func()  # for the keepalive, as paho's write loop does

    def _handle_pubackcomp(self, cmd):
        packet = self._in_packet["packet"]
        usual = cmd == "PUBACK" and 2 <= len(packet) <= 3
        if not usual or self.on_publish is not None or self._max_inflight_messages:
            return super()._handle_pubackcomp(cmd)
        (mid,) = struct.unpack("!H", packet[:2])
        with self._out_message_mutex:
            message = self._out_messages.pop(mid, None)
        if message is not None:
            message.info._set_as_published()
            if message.qos > 0:
                self._inflight_messages -= 1
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
