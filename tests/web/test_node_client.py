"""The TypeScript client library from Node.js against the real stack: it gets the short-lived
credential with a web session's cookies, connects over WebSockets, sends, receives a reply from
a Python SDK client in seq order, lists the conversation, and streams a reply that the Python
client receives as one message."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from mchat_sdk import Client

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

SCRIPT = Path(__file__).with_name("node_client.mjs")
LIB = Path(settings.BASE_DIR) / "web" / "dist-lib" / "mchat-client.js"


def test_the_client_library_chats_from_node(web_stack):
    assert shutil.which("node"), "Node.js is missing: run `make web`"
    assert LIB.is_file(), "the client library is not built: run `make web`"
    alice = web_stack.make_employee(name="王小丽")
    bob = web_stack.make_employee(name="赵大勇")
    session = web_stack.sign_in(alice.employee_id)
    cookies = "; ".join(f"{k}={v}" for k, v in session.http.cookies.items())
    bob_login = {
        "broker_host": "127.0.0.1",
        "broker_port": web_stack.live.port,
        "use_tls": False,
        "mqtt_username": bob.employee_id,
        "mqtt_password": web_stack.mqtt_passwords[bob.employee_id],
    }
    with Client(bob_login, device=f"py-{secrets.token_hex(4)}", track_groups=False) as bob_client:
        node = subprocess.Popen(
            [
                "node",
                str(SCRIPT),
                web_stack.base_url,
                cookies,
                session.http.cookies["csrftoken"],
                bob.employee_id,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            first = json.loads(node.stdout.readline() or "{}")
            assert first.get("connected", "").startswith(f"{alice.employee_id}_web-"), first
            assert first["sent"]["seq"] == 1
            event = bob_client.wait_event(
                lambda e: (
                    e.message.from_employee_id == alice.employee_id
                    and e.message.text == "来自 Node.js 的问候"
                ),
                kind="message",
                timeout=10,
            )
            assert event.message.seq == 1
            bob_client.send_private(alice.employee_id, "收到，来自 Python")
            received = json.loads(node.stdout.readline() or "{}")
            assert received == {
                "received": "收到，来自 Python",
                "seq": 2,
                "conversation": {"type": "private", "id": bob.employee_id},
            }
            listing = json.loads(node.stdout.readline() or "{}")
            assert listing == {"conversations": [[bob.employee_id, 2, 1]]}
            streamed = json.loads(node.stdout.readline() or "{}")
            assert streamed["seq"] == 3 and streamed["length"] == len("流式回复，来自 Node.js"), streamed
            final = bob_client.wait_event(
                lambda e: e.message.msg_id == streamed["streamed"], kind="message", timeout=10
            )
            assert final.data["stream"] is True and final.message.text == "流式回复，来自 Node.js"
            assert node.wait(timeout=15) == 0, node.stderr.read()
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
