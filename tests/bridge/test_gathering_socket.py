"""The bridge's socket (bridge.client.GatheringSocket): paho's many small reads served from
one recv, its writes gathered until the loop flushes them, failures reported to paho."""

from __future__ import annotations

import socket

import pytest

from bridge.client import GatheringSocket


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
