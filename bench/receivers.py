"""A receiver process: many subscriber clients in one Swarm, recording when bench messages
arrive. Driven by JSON lines on stdin, answering JSON lines on stdout:

    {"cmd": "connect", "port": P, "logins": [[user, pw, cid], ...], "subscriptions": [[topic...], ...],
     "whole": false}
    {"cmd": "wait", "tokens": {"t1": expected_count, ...}, "timeout": 5.0}  -> {"counts": {...}}
    {"cmd": "dump"}   -> {"arrivals": {token: [count, first, last]}, "other": n}; then forgets
    {"cmd": "dump", "times": true}  -> the same, and "times": {token: [every arrival]}
    {"cmd": "quit"}

A bench message is any payload containing the JSON string "bench <token>" (message content
or a raw publish); its token is what follows "bench " up to a space or the closing quote
(a body padded to the peer harness's size: "bench <token> xxx..."); with "whole": true it is
everything up to the closing quote (a coalesced stream delta carries several appends,
"bench t1 bench t2 ": bench.streams needs them all). Times are
time.monotonic(), comparable with the orchestrating process's.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from bench.swarm import Swarm

MARK = b'"bench '


def token_of(payload: bytes, *, whole: bool = False) -> str | None:
    """The bench token of a payload (`whole`: the whole string after the mark), or None when
    it carries none."""
    start = payload.find(MARK)
    if start < 0:
        return None
    start += len(MARK)
    end = payload.find(b'"', start)
    space = -1 if whole else payload.find(b" ", start, end)
    return payload[start : space if space >= 0 else end].decode()


class Recorder:
    def __init__(self) -> None:
        self.whole = False
        self.lock = threading.Lock()
        self.arrivals: dict[str, list] = {}
        self.times: dict[str, list[float]] = {}  # every arrival of a token (per-receiver latency)
        self.other = 0

    def on_message(self, client, message) -> None:
        now = time.monotonic()
        token = token_of(message.payload, whole=self.whole)
        if token is None:
            self.other += 1
            return
        with self.lock:
            entry = self.arrivals.get(token)
            if entry is None:
                self.arrivals[token] = [1, now, now]
                self.times[token] = [now]
            else:
                entry[0] += 1
                entry[2] = now
                self.times[token].append(now)

    def counts(self, tokens) -> dict[str, int]:
        with self.lock:
            return {t: self.arrivals.get(t, [0])[0] for t in tokens}

    def dump(self, times: bool = False) -> dict:
        with self.lock:
            arrivals, self.arrivals = self.arrivals, {}
            every, self.times = self.times, {}
            other, self.other = self.other, 0
        return {"arrivals": arrivals, "other": other, **({"times": every} if times else {})}


def main() -> None:
    recorder = Recorder()
    swarm: Swarm | None = None
    out = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command["cmd"]
        if cmd == "connect":
            recorder.whole = command.get("whole", False)
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
            reply = recorder.dump(times=command.get("times", False))
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
