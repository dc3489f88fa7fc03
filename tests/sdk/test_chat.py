"""The terminal client as a person uses it: in tmux (send-keys, capture-pane), on the live stack."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mchat_sdk.events import Conversation
from tests.broker_harness import wait_until
from tests.sdk.conftest import connection_for

pytestmark = [
    pytest.mark.broker,
    pytest.mark.django_db(transaction=True),
]

REPO = Path(__file__).resolve().parents[2]


class Tmux:
    """One private tmux server (its own socket), killed at the end."""

    def __init__(self) -> None:
        self.socket = f"mchat-sdk-{uuid.uuid4().hex[:10]}"
        self.session = "chat"

    def _tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        )

    def start(self, command: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        shell = f"cd {REPO} && env {exports} {' '.join(command)}; sleep 30"
        result = self._tmux("new-session", "-d", "-s", self.session, "-x", "220", "-y", "60", shell)
        assert result.returncode == 0, result.stderr

    def type(self, text: str) -> None:
        assert self._tmux("send-keys", "-t", self.session, "-l", text).returncode == 0
        assert self._tmux("send-keys", "-t", self.session, "Enter").returncode == 0

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", self.session, "-S", "-500").stdout

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        screen = wait_until(lambda: text in (shown := self.screen()) and shown, timeout, interval=0.1)
        if not screen:
            raise AssertionError(f"{text!r} did not appear on the terminal:\n{self.screen()}")
        return screen

    def kill(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def tmux():
    terminal = Tmux()
    yield terminal
    terminal.kill()


def test_a_person_chats_from_the_terminal(live, sdk, tmux, tmp_path):
    alice, alice_pw = live.issue("Alice")
    bob, bob_pw = live.issue("Bob")
    carol, carol_pw = live.issue("Carol")
    login = tmp_path / "alice.json"
    login.write_text(json.dumps({"mqtt_connection": connection_for(live, alice, alice_pw)}), encoding="utf-8")
    bob_phone = sdk(bob, bob_pw, device="phone")

    tmux.start(
        [
            sys.executable,
            "-m",
            "mchat_sdk",
            "chat",
            "--connection",
            str(login),
            "--device",
            "term",
            "--session-expiry",
            "0",
        ],
        env={
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO),
            "TERM": "xterm",
            "HOME": os.environ.get("HOME", "/root"),
        },
    )
    tmux.wait_for(f"已登录：Alice（{alice.employee_id}_term）")

    # Send a private message by typing it.
    tmux.type(f"/to {bob.employee_id} 你好 Bob，我在终端里")
    received = bob_phone.wait_event(lambda e: e.message.text == "你好 Bob，我在终端里", kind="message")
    assert received.message.conversation == Conversation("private", alice.employee_id)
    tmux.wait_for("✓ 已发送 #1")

    # Read receipts and replies appear live; plain lines go to the current conversation.
    bob_phone.read_ack(received.message)
    tmux.wait_for(f"✓ Bob({bob.employee_id}) 已读 #1")
    bob_phone.send_private(alice.employee_id, "收到，Alice")
    tmux.wait_for(f"[私聊] Bob({bob.employee_id})：收到，Alice")
    tmux.type("那我们下午见")
    assert bob_phone.wait_event(lambda e: e.message.text == "那我们下午见", kind="message")

    # Presence changes of colleagues.
    carol_laptop = sdk(carol, carol_pw, device="laptop")
    carol_laptop.close(end_session=True)
    tmux.wait_for(f"○ Carol({carol.employee_id}) 离线")

    # Conversations and history.
    tmux.type("/list")
    tmux.wait_for(f"1. Bob({bob.employee_id})")
    tmux.type("/history 1")
    screen = tmux.wait_for("#3 ")
    assert "你好 Bob，我在终端里" in screen and "收到，Alice" in screen

    # Groups: joining is announced, and /group sends to it.
    group = bob_phone.group_create("终端测试群", [alice.employee_id])
    tmux.wait_for("[通知] 入群通知 终端测试群")
    tmux.type(f"/group {group['group_id']} 群里好")
    got = bob_phone.wait_event(lambda e: e.message.text == "群里好", kind="message")
    assert got.message.conversation == Conversation("group", group["group_id"])

    # Errors are shown, and the client keeps going.
    tmux.type("/to emp_nobody_999 在吗")
    tmux.wait_for("✗ 404")

    tmux.type("/quit")
    tmux.wait_for("再见。")
    bob_phone.wait_event(
        lambda e: e.employee_id == alice.employee_id and e.data.get("status") == "offline", kind="status"
    )
