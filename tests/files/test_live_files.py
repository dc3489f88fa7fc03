"""A file sent over MQTT end to end: real broker and bridge, real HTTP to Django's views."""

from __future__ import annotations

import os

import pytest
import requests

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_upload_send_by_key_and_download_as_the_recipient(live, live_server, settings):
    settings.MCHAT_PUBLIC_BASE_URL = live_server.url
    alice, alice_pw = live.issue("FileSenderAlice")
    bob, bob_pw = live.issue("FileReceiverBob")
    carol, carol_pw = live.issue("FileOutsiderCarol")
    sender = live.connect(alice, alice_pw, device="laptop")
    receiver = live.connect(bob, bob_pw, device="phone")
    outsider = live.connect(carol, carol_pw, device="phone")
    inbox = f"mchat/inbox/{bob.employee_id}"
    receiver.subscribe(inbox)

    body = os.urandom(70_000)
    grant = sender.request(
        "file.upload_url", file_name="合同.pdf", content_type="application/pdf", size=len(body)
    )
    assert grant["code"] == 0, grant
    put = requests.put(grant["data"]["url"], data=body, headers=grant["data"]["headers"], timeout=10)
    assert put.status_code == 200, put.text

    content = {"type": "file", "key": grant["data"]["key"], "name": "合同.pdf", "size": len(body)}
    sent = sender.request("msg.send_private", to_employee_id=bob.employee_id, content=content)
    assert sent["code"] == 0, sent
    assert receiver.wait_for_count(inbox, 1, 10)
    [delivery] = receiver.messages(inbox)
    assert delivery["content"]["key"] == grant["data"]["key"]

    link = receiver.request("file.download_url", key=delivery["content"]["key"])
    assert link["code"] == 0, link
    got = requests.get(link["data"]["url"], timeout=10)
    assert got.status_code == 200 and got.content == body

    refused = outsider.request("file.download_url", key=delivery["content"]["key"])
    assert (refused["code"], refused["message"], refused["data"]) == (403, "无权访问该文件", None)
