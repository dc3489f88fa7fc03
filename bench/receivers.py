"""A receiver process: many subscriber clients in one Swarm, recording when bench messages
arrive. Driven by JSON lines on stdin, answering JSON lines on stdout:

    {"cmd": "connect", "port": P, "logins": [[user, pw, cid], ...], "subscriptions": [[topic...], ...]}
    {"cmd": "wait", "tokens": {"t1": expected_count, ...}, "timeout": 5.0}  -> {"counts": {...}}
    {"cmd": "dump"}   -> {"arrivals": {token: [count, first, last]}, "other": n}; then forgets
    {"cmd": "quit"}

A bench message is any payload containing the JSON string "bench <token>" (message content
or a raw publish); its token is what follows "bench " up to the closing quote. Times are
time.monotonic(), comparable with the orchestrating process's.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bench.swarm import Swarm

MARK = b'"bench '


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, list] = {}
        self.other = 0

    def on_message(self, client, message) -> None:
        now = time.monotonic()
        payload = message.payload
        start = payload.find(MARK)
        if start < 0:
            self.other += 1
            return
        start += len(MARK)
        token = payload[start : payload.find(b'"', start)].decode()
        with self.lock:
            entry = self.arrivals.get(token)
            if entry is None:
                self.arrivals[token] = [1, now, now]
            else:
                entry[0] += 1
                entry[2] = now

    def counts(self, tokens) -> dict[str, int]:
        with self.lock:
            return {t: self.arrivals.get(t, [0])[0] for t in tokens}

    def dump(self) -> dict:
        with self.lock:
            arrivals, self.arrivals = self.arrivals, {}
            other, self.other = self.other, 0
        return {"arrivals": arrivals, "other": other}


def main() -> None:
    recorder = Recorder()
    swarm: Swarm | None = None
    out = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "connect":
            swarm = Swarm("127.0.0.1", command["port"]).start()
            try:
                swarm.connect_many(
                    [tuple(x) for x in command["logins"]],
                    subscriptions=command["subscriptions"],
                    on_message=recorder.on_message,
                    timeout=command.get("timeout", 120),
                )
                reply = {"ok": True}
            except Exception as exc:
                reply = {"ok": False, "error": str(exc)}
        elif cmd == "wait":
            tokens = command["tokens"]
            deadline = time.monotonic() + command.get("timeout", 5.0)
            while True:
                counts = recorder.counts(tokens)
                if all(counts[t] >= n for t, n in tokens.items()) or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
            reply = {"counts": counts}
        elif cmd == "dump":
            reply = recorder.dump()
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    if swarm is not None:
        swarm.stop()


if __name__ == "__main__":
    main()
