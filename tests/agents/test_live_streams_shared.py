"""One stream served by two bridge processes sharing the request subscription and a Redis
stream buffer (issue 17): real Mosquitto, two `manage.py runbridge --shared` processes, a
redis-server, mchat_sdk clients. Appends land on both processes and still add up to one text;
a bridge killed mid-stream loses nothing the buffer holds."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

from bench.services import free_port
from mchat_sdk.events import Conversation
from messaging.models import Message
from tests.agents.test_live_agents import _discard_session
from tests.agents.test_live_streams import deltas_of
from tests.broker_harness import wait_until
from tests.notifications.test_celery_redis import redis_url  # noqa: F401 -- a fixture

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


class Bridge:
    """`manage.py runbridge --shared` with the Redis stream buffer, its metrics on a port."""

    def __init__(self, live, redis: str, instance: str, log_dir):
        self.instance, self.port = instance, free_port()
        self.env = {**live.subprocess_env(), "MCHAT_STREAM_REDIS_URL": redis}
        self.log = log_dir / f"bridge-{instance}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Bridge:
        command = [sys.executable, "manage.py", "runbridge", "--instance", self.instance, "--shared"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*command, "--metrics-port", str(self.port)],
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_until(self._connected, timeout=60), self.log.read_text(errors="replace")[-3000:]
        return self

    def _connected(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as answer:
                return json.loads(answer.read())["broker_connected"]
        except OSError:
            return False

    def appends_served(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        found = re.search(r'mchat_bridge_requests_total\{action="msg.stream_append",code="0"\} (\S+)', text)
        return int(float(found.group(1))) if found else 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(30)
        self.process = None


@pytest.fixture
def two_bridges(live, redis_url, tmp_path):  # noqa: F811
    live.stop_bridge()  # the in-process bridge: these tests run real processes
    bridges = [Bridge(live, redis_url, name, tmp_path) for name in ("s1", "s2")]
    try:
        for bridge in bridges:
            bridge.start()
        yield bridges
    finally:  # also when the second one failed to start: no process outlives the test
        for bridge in bridges:
            bridge.stop(signal.SIGKILL)
            _discard_session(bridge.instance)


def test_appends_served_by_two_bridge_processes_become_one_message(live, two_bridges, sdk, issue_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("写作助手", "writer")
    a = sdk(alice, alice_pw)
    writer = sdk(agent, agent_pw, device="agent")
    msg_id = writer.stream_start(Conversation("private", alice.employee_id))["msg_id"]
    pieces = [f"第{n}句。" for n in range(300)]
    text = ""
    for piece in pieces:
        answer = writer.stream_append(msg_id, piece)
        assert answer["offset"] == len(text)  # the same text, whichever process answered
        text += piece
    served = [bridge.appends_served() for bridge in two_bridges]
    assert sum(served) == len(pieces) and min(served) > 0, served  # the share took turns
    [shown] = a.history(Conversation("private", agent.employee_id))["messages"]
    assert (shown["streaming"], shown["content"]) == (True, text)
    writer.stream_end(msg_id)
    final = a.wait_event(lambda e: e.message.msg_id == msg_id, kind="message")
    assert final.data["stream"] is True and final.message.text == text
    assert list(Message.objects.values_list("content", "stream_state")) == [(text, "ended")]
    # The coalesced deltas from both processes, each at its offset, add up to a prefix.
    assert text.startswith(deltas_of(a, msg_id))
    delivered = [e for e in a.history_events if e.kind == "stream" and e.data.get("type") == "stream_delta"]
    assert 0 < len(delivered) < len(pieces)


def test_a_bridge_killed_mid_stream_loses_nothing_the_buffer_holds(live, two_bridges, sdk, issue_agent):
    alice, alice_pw = live.issue("Alice")
    agent, agent_pw = issue_agent("写作助手", "writer")
    a = sdk(alice, alice_pw)
    writer = sdk(agent, agent_pw, device="agent")
    msg_id = writer.stream_start(Conversation("private", alice.employee_id))["msg_id"]
    before = [f"重启前{n}。" for n in range(40)]
    for n, piece in enumerate(before):
        writer.stream_append(msg_id, piece, seq_id=f"before-{n}")
    killed = two_bridges[0]
    killed.stop(signal.SIGKILL)  # its memory is gone; the stream is in Redis
    killed.start()  # the same instance: its session's queued requests are served
    after = [f"重启后{n}。" for n in range(40)]
    for n, piece in enumerate(after):
        writer.stream_append(msg_id, piece, seq_id=f"after-{n}")
    assert killed.appends_served() > 0  # the new process served some of them
    writer.stream_end(msg_id)
    text = "".join(before + after)
    assert Message.objects.get(msg_id=msg_id).content == text
    assert a.wait_event(lambda e: e.message.msg_id == msg_id, kind="message").message.text == text
