"""Good logins per second while a guesser hammers one account (the plugin's login guard).

Starts a private Mosquitto with the mchat plugin (the usual guard defaults: 5 failures per
username, 20 per address, 1 s doubling to 60 s), then measures, each for --seconds:

1. good logins alone: CONNECT with the right password, CONNACK, DISCONNECT, in a loop over
   --employees accounts from 127.0.0.1;
2. the same while a guesser process hammers one other account with wrong passwords from
   127.0.0.2 as fast as it can.

Each side is its own process speaking raw MQTT 5 over a socket (no client library in the
way). Prints one line per phase and a summary line.

    python -m bench.login_guard [--seconds 5] [--employees 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import struct
import tempfile
import time
from pathlib import Path

from bench.mqtt_packets import packet, utf8
from bench.services import free_port
from bridge.broker import MosquittoProcess, build_plugin, password_line, render_config, write_atomically
from org.credentials import hash_password

VICTIM = "emp_victim"


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    # Protocol "MQTT" level 5; flags: username, password, clean start; keepalive 30; no properties.
    variable = utf8("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + b"\x00"
    return packet(0x10, variable + utf8(client_id) + utf8(username) + utf8(password))


def login(port: int, username: str, password: str, source: str) -> int:
    """One CONNECT; returns the CONNACK reason code (0 = accepted)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(f"{username}_bench", username, password))
        head = sock.recv(5)
        if len(head) < 4 or head[0] != 0x20:
            return -1
        reason = head[3]
        if reason == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return reason


def _good_logins(port: int, users: list[tuple[str, str]], seconds: float, result) -> None:
    count = failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        username, password = users[count % len(users)]
        if login(port, username, password, "127.0.0.1") == 0:
            count += 1
        else:
            failures += 1
    result.put(("good", count / seconds, failures))


def _guesser(port: int, seconds: float, result) -> None:
    attempts = accepted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        attempts += 1
        if login(port, VICTIM, f"guess-{attempts}", "127.0.0.2") == 0:
            accepted += 1
    result.put(("guesser", attempts / seconds, accepted))


def run(seconds: float, employees: int) -> dict:
    build_plugin()
    with tempfile.TemporaryDirectory(prefix="mchat-login-bench-") as tmp:
        directory = Path(tmp)
        users = [(f"emp_good_{i:03d}", f"pw-{i}-correct-horse") for i in range(employees)]
        lines = [password_line(name, hash_password(pw)) for name, pw in [*users, (VICTIM, "victim-pw")]]
        port = free_port()
        conf = render_config(port=port, directory=directory)
        write_atomically(directory / "passwd", "".join(f"{line}\n" for line in lines))
        broker = MosquittoProcess(conf)
        broker.start()
        try:
            ctx = multiprocessing.get_context("spawn")
            out: dict = {}
            queue = ctx.Queue()
            alone = ctx.Process(target=_good_logins, args=(port, users, seconds, queue))
            alone.start()
            out["alone"] = queue.get(timeout=seconds + 60)
            alone.join()

            good = ctx.Process(target=_good_logins, args=(port, users, seconds, queue))
            guesser = ctx.Process(target=_guesser, args=(port, seconds, queue))
            guesser.start()
            good.start()
            for _ in range(2):
                kind, rate, extra = queue.get(timeout=seconds + 60)
                out["hammered" if kind == "good" else "guesser"] = (kind, rate, extra)
            good.join()
            guesser.join()
            log = (directory / "mosquitto.log").read_text(errors="replace")
            out["windows"] = log.count(f'user "{VICTIM}"')
        finally:
            broker.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.login_guard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--employees", type=int, default=20)
    args = parser.parse_args(argv)
    out = run(args.seconds, args.employees)
    _, alone, alone_failed = out["alone"]
    _, hammered, hammered_failed = out["hammered"]
    _, guesses, guessed_in = out["guesser"]
    print(f"good logins alone:            {alone:8.0f}/s ({alone_failed} refused)")
    print(f"good logins while hammered:   {hammered:8.0f}/s ({hammered_failed} refused)")
    print(
        f"guesser against {VICTIM}:   {guesses:8.0f} attempts/s, {guessed_in} accepted, "
        f"{out['windows']} backoff windows opened (the rest refused unchecked)"
    )
    print(
        f"login_guard: {hammered:.0f} good logins/s while a guesser hammers one account "
        f"at {guesses:.0f}/s ({alone:.0f}/s without the guesser; {args.seconds:g} s each)"
    )


if __name__ == "__main__":
    main()
