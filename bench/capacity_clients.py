"""Many cheap MQTT 5 connections for bench/capacity.py.

Raw CONNECT / SUBSCRIBE / PUBLISH packets over asyncio (one Protocol object per connection, no
client library), so two processes can hold tens of thousands of connections on a 2-core
machine. Connections leave from several 127.0.0.x source addresses: one address has only
about 28,000 ephemeral ports towards one listener.

A `SwarmWorker` runs in its own process (`worker_main`) and holds a slice of the employees;
the controller sends it commands over a Pipe and gets one dict back per command.
"""

from __future__ import annotations

import asyncio
import resource
import struct
import time
from dataclasses import dataclass, field

from bench.mqtt_packets import packet, utf8, varint

SESSION_EXPIRY_SECONDS = 86_400
KEEPALIVE_SECONDS = 300  # the broker's max_keepalive
PING_EVERY_SECONDS = 120
CONNECT_TIMEOUT = 30.0


def connect_packet(
    client_id: str,
    username: str,
    password: str,
    *,
    clean_start: bool = False,
    session_expiry: int = SESSION_EXPIRY_SECONDS,
    will_topic: str = "",
    will_payload: bytes = b"",
) -> bytes:
    """MQTT 5 CONNECT: username and password, a persistent session unless clean_start, and a
    retained QoS 1 Will (as mchat_sdk leaves its offline status)."""
    flags = 0x80 | 0x40 | (0x02 if clean_start else 0)
    if will_topic:
        flags |= 0x04 | 0x08 | 0x20  # Will, QoS 1, retained
    properties = b"\x11" + struct.pack("!I", session_expiry) if session_expiry else b""
    variable = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", KEEPALIVE_SECONDS)
    variable += varint(len(properties)) + properties
    payload = utf8(client_id)
    if will_topic:
        payload += b"\x00" + utf8(will_topic) + struct.pack("!H", len(will_payload)) + will_payload
    payload += utf8(username) + utf8(password)
    return packet(0x10, variable + payload)


def subscribe_packet(packet_id: int, topics: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"\x00" + b"".join(utf8(t) + b"\x01" for t in topics)
    return packet(0x82, body)


def publish_packet(topic: str, payload: bytes, *, packet_id: int = 0, retain: bool = False) -> bytes:
    """QoS 1 when packet_id is given, else QoS 0."""
    first = 0x30 | (0x02 if packet_id else 0) | (0x01 if retain else 0)
    body = utf8(topic) + (struct.pack("!H", packet_id) if packet_id else b"") + b"\x00" + payload
    return packet(first, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"  # normal disconnection: the session stays (its expiry is set)


class Connection(asyncio.Protocol):
    """One MQTT connection: records CONNACK, SUBACK, PUBACKs and what arrives on its inbox."""

    def __init__(self, owner: Peer, index: int) -> None:
        self.owner, self.index = owner, index
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[tuple[bool, int]] = loop.create_future()
        self.suback: asyncio.Future[bytes] = loop.create_future()
        for future in (self.connack, self.suback):  # a lost connection's, awaited or not
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.owner.connect_bytes(self.index))

    def connection_lost(self, exc) -> None:
        self.closed = True
        for future in (self.connack, self.suback):
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        self.owner.lost(self)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            length, shift, pos = 0, 0, 1
            while True:
                if pos >= len(buffer):
                    return
                byte = buffer[pos]
                length |= (byte & 0x7F) << shift
                pos += 1
                if not byte & 0x80:
                    break
                shift += 7
            if len(buffer) < pos + length:
                return
            first, body = buffer[0], bytes(buffer[pos : pos + length])
            del buffer[: pos + length]
            self._packet(first, body)

    def _packet(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == 2 and not self.connack.done():  # CONNACK: session present, reason
            self.connack.set_result((bool(body[0] & 1), body[1]))
        elif kind == 9 and not self.suback.done():  # SUBACK
            self.suback.set_result(body[3:])
        elif kind == 3:  # PUBLISH
            qos = (first >> 1) & 3
            (topic_len,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + topic_len].decode()
            pos = 2 + topic_len
            if qos:
                packet_id = body[pos : pos + 2]
                pos += 2
                self.transport.write(b"\x40\x02" + packet_id)  # PUBACK
            props, shift = 0, 0
            while True:
                byte = body[pos]
                pos += 1
                props |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            self.owner.received(self, topic, body[pos + props :])
        elif kind == 4:  # PUBACK of our QoS 1 publish
            self.owner.acked(struct.unpack_from("!H", body)[0])


@dataclass
class Peer:
    """What a set of connections shares: the broker's address and the credentials."""

    host: str
    port: int
    users: list[tuple[str, str]]  # (employee_id, password) by index
    sources: list[str]
    device: str = "cap"
    will: bool = True  # leave an offline status, as mchat_sdk does
    presence_all: bool = False  # subscribe to mchat/status/+ (as mchat_sdk does) instead of one's own
    status_count: int = 0
    connections: dict[int, Connection] = field(default_factory=dict)
    inbox_ids: dict[str, int] = field(default_factory=dict)  # message id -> times received
    lost_count: int = 0
    pending_acks: set[int] = field(default_factory=set)

    def connect_bytes(self, index: int) -> bytes:
        employee_id, password = self.users[index]
        return connect_packet(
            f"{employee_id}_{self.device}",
            employee_id,
            password,
            will_topic=f"mchat/status/{employee_id}" if self.will else "",
            will_payload=b'{"status":"offline"}',
        )

    def lost(self, connection: Connection) -> None:
        self.lost_count += 1
        if self.connections.get(connection.index) is connection:
            del self.connections[connection.index]

    def received(self, connection: Connection, topic: str, payload: bytes) -> None:
        if topic.startswith("mchat/inbox/"):
            key = payload.decode(errors="replace")
            self.inbox_ids[key] = self.inbox_ids.get(key, 0) + 1
        else:
            self.status_count += 1

    def acked(self, packet_id: int) -> None:
        self.pending_acks.discard(packet_id)

    async def open(self, index: int, *, subscribe: bool) -> tuple[bool, int]:
        """Connect employee `index` (and subscribe to its inbox and status unless its session
        was resumed with them); (session_present, reason code)."""
        loop = asyncio.get_running_loop()
        source = self.sources[index % len(self.sources)]
        _transport, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: Connection(self, index), self.host, self.port, local_addr=(source, 0)
            ),
            CONNECT_TIMEOUT,
        )
        present, reason = await asyncio.wait_for(connection.connack, CONNECT_TIMEOUT)
        if reason != 0:
            connection.transport.close()
            return present, reason
        self.connections[index] = connection
        if subscribe or not present:
            employee_id = self.users[index][0]
            status = "mchat/status/+" if self.presence_all else f"mchat/status/{employee_id}"
            connection.transport.write(subscribe_packet(1, [f"mchat/inbox/{employee_id}", status]))
            await asyncio.wait_for(connection.suback, CONNECT_TIMEOUT)
        # Online again, retained (as mchat_sdk announces itself on every connect).
        connection.transport.write(
            publish_packet(
                f"mchat/status/{self.users[index][0]}", b'{"status":"online"}', packet_id=2, retain=True
            )
        )
        return present, reason


class SwarmWorker:
    """A slice of the employees, connected and reconnected on command."""

    def __init__(self, peer: Peer, indexes: list[int]) -> None:
        self.peer = peer
        self.indexes = indexes

    async def connect_all(self, window: int, subscribe: bool = True) -> dict:
        """Connect every employee of the slice, `window` connects in flight; each one that
        fails is retried (up to 5 times). Returns counts and timings."""
        gate = asyncio.Semaphore(window)
        started = time.monotonic()
        done_at: list[float] = []
        failures: dict[str, int] = {}
        present = 0

        async def one(index: int) -> None:
            nonlocal present
            for attempt in range(5):
                async with gate:
                    try:
                        session, reason = await self.peer.open(index, subscribe=subscribe)
                    except (OSError, TimeoutError, ConnectionError) as exc:
                        key = type(exc).__name__ + (f" {exc.errno}" if getattr(exc, "errno", None) else "")
                        failures[key] = failures.get(key, 0) + 1
                        await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                if reason == 0:
                    present += session
                    done_at.append(time.monotonic() - started)
                    return
                failures[f"reason {reason}"] = failures.get(f"reason {reason}", 0) + 1
                await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(one(i) for i in self.indexes))
        done_at.sort()
        return {
            "connected": len(done_at),
            "session_present": present,
            "seconds": round(done_at[-1], 3) if done_at else None,
            "p50_seconds": round(done_at[len(done_at) // 2], 3) if done_at else None,
            "failures": failures,
        }

    async def disconnect(self, count: int) -> dict:
        """Disconnect the first `count` of the slice normally (their sessions stay)."""
        gone = []
        for index in self.indexes[:count]:
            connection = self.peer.connections.pop(index, None)
            if connection is not None:
                connection.transport.write(DISCONNECT)
                connection.transport.close()
                gone.append(self.peer.users[index][0])
        await asyncio.sleep(0.2)
        return {"employee_ids": gone}

    async def wait_all_lost(self, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while self.peer.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return {"still_open": len(self.peer.connections)}

    async def status(self) -> dict:
        return {
            "open": len(self.peer.connections),
            "lost": self.peer.lost_count,
            "received": len(self.peer.inbox_ids),
            "duplicates": sum(n - 1 for n in self.peer.inbox_ids.values()),
            "status_received": self.peer.status_count,
        }

    async def received(self) -> dict:
        return {"ids": sorted(self.peer.inbox_ids)}

    async def ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_SECONDS)
            for connection in list(self.peer.connections.values()):
                connection.transport.write(PINGREQ)

    async def close(self) -> dict:
        for connection in list(self.peer.connections.values()):
            connection.transport.abort()
        return {}


async def publish_many(
    peer: Peer, client_id: str, messages: list[tuple[str, bytes]], window: int = 500
) -> dict:
    """Publish (topic, payload) QoS 1 from one connection of `peer.users[0]` (the bridge's
    user: it may write any inbox), `window` unacknowledged at a time; wait for every PUBACK."""
    peer.device, peer.will = client_id, False
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    _transport, connection = await loop.create_connection(
        lambda: Connection(peer, 0), peer.host, peer.port, local_addr=(peer.sources[0], 0)
    )
    _present, reason = await asyncio.wait_for(connection.connack, CONNECT_TIMEOUT)
    if reason:
        raise RuntimeError(f"the publisher was refused: reason {reason}")
    packet_id = 0
    for topic, payload in messages:
        while len(peer.pending_acks) >= window:
            await asyncio.sleep(0.001)
        packet_id = packet_id % 65535 + 1
        peer.pending_acks.add(packet_id)
        connection.transport.write(publish_packet(topic, payload, packet_id=packet_id))
    deadline = time.monotonic() + 60
    while peer.pending_acks and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    unacked = len(peer.pending_acks)
    connection.transport.write(DISCONNECT)
    connection.transport.close()
    return {"published": len(messages), "unacknowledged": unacked, "seconds": time.monotonic() - started}


def worker_main(
    pipe,
    host: str,
    port: int,
    users: list[tuple[str, str]],
    indexes: list[int],
    sources: list[str],
    presence_all: bool = False,
) -> None:
    """A swarm process: raise the open-files limit, then serve the controller's commands."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(indexes) + 1000
    if soft < wanted:  # up to the hard limit (the controller raised it as far as it could)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    peer = Peer(host, port, users, sources, presence_all=presence_all)
    asyncio.run(_serve(pipe, SwarmWorker(peer, indexes)))


async def _serve(pipe, worker: SwarmWorker) -> None:
    loop = asyncio.get_running_loop()
    pinger = asyncio.create_task(worker.ping())
    while True:
        command, arguments = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            pinger.cancel()
            pipe.send(await worker.close())
            return
        try:
            pipe.send(await getattr(worker, command)(**arguments))
        except Exception as exc:  # reported to the controller, which decides
            pipe.send({"error": f"{type(exc).__name__}: {exc}"})
