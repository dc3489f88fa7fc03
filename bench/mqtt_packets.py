"""MQTT 5 encoding for the benches that speak raw MQTT over a socket (bench.capacity_clients,
bench.login_guard): no client library between them and the broker."""

from __future__ import annotations

import struct


def utf8(text: str) -> bytes:
    """A UTF-8 string field: its length in two bytes, then the bytes."""
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def varint(n: int) -> bytes:
    """A variable byte integer (a remaining length, a property length): 7 bits a byte."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    """A control packet: its first byte (type and flags), the body's length, the body."""
    return bytes([first]) + varint(len(body)) + body
