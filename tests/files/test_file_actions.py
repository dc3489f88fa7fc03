"""file.upload_url, file.download_url, config.storage through the bridge pipeline, and file
messages by key (local backend; the HTTP side is in test_local_http.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from messaging import services
from messaging.models import Message, StoredFile
from tests.files.helpers import upload_in_process

pytestmark = pytest.mark.django_db

PDF = {"file_name": "报告.pdf", "content_type": "application/pdf", "size": 11}


def granted(call, employee, **fields):
    response = call(employee, "file.upload_url", **{**PDF, **fields})
    assert response["code"] == 0, response
    return response["data"]


def uploaded(call, employee, body=b"hello world", **fields) -> dict:
    grant = granted(call, employee, size=len(body), **fields)
    upload_in_process(grant, body)
    return grant


def test_upload_url_grants_a_one_time_put_under_the_callers_prefix(call, uploader, settings):
    settings.MCHAT_PUBLIC_BASE_URL = "https://files.example.com"
    before = timezone.now()
    data = granted(call, uploader)
    assert set(data) == {"url", "method", "headers", "key", "file_name", "content_type", "size", "expires_at"}
    assert data["method"] == "PUT"
    assert data["headers"] == {"Content-Type": "application/pdf"}
    assert data["key"].startswith("emp_uma_001/") and data["key"].endswith("/报告.pdf")
    assert data["url"].startswith("https://files.example.com/files/emp_uma_001/")
    assert "token=" in data["url"]
    expires = parse_datetime(data["expires_at"])
    lifetime = timedelta(seconds=settings.MCHAT_UPLOAD_URL_TTL_SECONDS)
    assert before + lifetime - timedelta(seconds=1) <= expires <= timezone.now() + lifetime
    stored = StoredFile.objects.get(key=data["key"])
    assert (stored.owner, stored.name, stored.content_type, stored.size) == (
        uploader,
        "报告.pdf",
        "application/pdf",
        11,
    )
    assert stored.uploaded_at is None and stored.backend == "local"


def test_upload_url_accepts_name_and_normalises_the_content_type(call, uploader):
    data = call(uploader, "file.upload_url", name="a.png", content_type="Image/PNG; x=y", size=0)["data"]
    assert (data["file_name"], data["content_type"]) == ("a.png", "image/png")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"file_name": None}, "file_name 不能为空"),
        ({"file_name": ""}, "file_name 不能为空"),
        ({"content_type": None}, "content_type 不能为空"),
        ({"size": None}, "size 不能为空"),
        ({"size": -1}, "size"),
        ({"size": "many"}, "size"),
        ({"size": 1024 * 1024 + 1}, "size 不能超过 1048576 字节"),
        ({"content_type": "text/html"}, "content_type 不允许上传：text/html"),
        ({"content_type": "nonsense"}, "content_type 格式不正确：nonsense"),
    ],
)
def test_upload_url_refuses_what_the_rules_do_not_allow(call, uploader, fields, message):
    payload = {k: v for k, v in {**PDF, **fields}.items() if v is not None}
    response = call(uploader, "file.upload_url", **payload)
    assert response["code"] == 400
    assert message in response["message"]
    assert not StoredFile.objects.exists()


def test_download_url_for_the_uploader(call, uploader, settings):
    grant = uploaded(call, uploader)
    response = call(uploader, "file.download_url", key=grant["key"])
    assert response["code"] == 0, response
    data = response["data"]
    assert set(data) == {"url", "method", "key", "file_name", "content_type", "size", "expires_at"}
    assert (data["key"], data["file_name"], data["size"], data["method"]) == (
        grant["key"],
        "报告.pdf",
        11,
        "GET",
    )
    lifetime = timedelta(seconds=settings.MCHAT_DOWNLOAD_URL_TTL_SECONDS)
    assert parse_datetime(data["expires_at"]) <= timezone.now() + lifetime
    assert call(uploader, "file.download_url", path=grant["key"])["code"] == 0


def test_download_url_refusals(call, uploader, stranger):
    assert call(uploader, "file.download_url")["message"] == "key 不能为空"
    missing = call(uploader, "file.download_url", key="emp_uma_001/2025/01/" + "0" * 32 + "/x.pdf")
    assert missing["code"] == 404
    pending = granted(call, uploader)
    assert call(uploader, "file.download_url", key=pending["key"])["code"] == 404  # not uploaded yet
    done = uploaded(call, uploader)
    refused = call(stranger, "file.download_url", key=done["key"])
    assert (refused["code"], refused["message"]) == (403, "无权访问该文件")


def file_content(grant: dict, **extra) -> dict:
    return {"type": "file", "key": grant["key"], "name": grant["file_name"], "size": grant["size"], **extra}


def test_a_private_file_message_opens_the_file_to_the_peer_until_recalled(
    call, uploader, friend, stranger, published
):
    grant = uploaded(call, uploader)
    assert call(friend, "file.download_url", key=grant["key"])["code"] == 403

    sent = call(uploader, "msg.send_private", to_employee_id=friend.employee_id, content=file_content(grant))
    assert sent["code"] == 0, sent
    message = Message.objects.get(msg_id=sent["data"]["msg_id"])
    assert message.file_key == grant["key"]
    [delivery] = published.to(f"mchat/inbox/{friend.employee_id}")
    assert delivery["content"] == {"type": "file", "key": grant["key"], "name": "报告.pdf", "size": 11}

    assert call(friend, "file.download_url", key=grant["key"])["code"] == 0
    assert call(stranger, "file.download_url", key=grant["key"])["code"] == 403

    assert call(uploader, "msg.recall", msg_id=message.msg_id)["code"] == 0
    assert call(friend, "file.download_url", key=grant["key"])["code"] == 403
    assert call(uploader, "file.download_url", key=grant["key"])["code"] == 0


def test_a_group_image_opens_the_file_to_members_only(call, uploader, friend, stranger):
    group = services.group_create(actor=uploader, name="设计组", member_ids=[friend.employee_id]).group
    grant = uploaded(call, uploader, file_name="图.png", content_type="image/png")
    image = {"type": "image", "key": grant["key"], "width": 800, "height": 600}
    sent = call(uploader, "msg.send_group", group_id=group.group_id, content=image)
    assert sent["code"] == 0, sent
    assert call(friend, "file.download_url", key=grant["key"])["code"] == 0
    assert call(stranger, "file.download_url", key=grant["key"])["code"] == 403


@pytest.mark.parametrize("action", ["msg.send_private", "msg.send_group"])
def test_a_message_may_only_refer_to_the_senders_own_uploaded_file(call, uploader, friend, action):
    group = services.group_create(actor=uploader, name="同组", member_ids=[friend.employee_id]).group
    where = (
        {"to_employee_id": uploader.employee_id}
        if action == "msg.send_private"
        else {"group_id": group.group_id}
    )
    mine = uploaded(call, uploader)
    pending = granted(call, friend)
    cases = [
        (file_content(mine), "content.key 不是发送者上传的文件"),
        (file_content(pending), "content.key 对应的文件尚未上传完成"),
        (
            file_content(mine, key="emp_fei_002/2025/01/" + "0" * 32 + "/x.pdf"),
            "content.key 对应的文件不存在",
        ),
        (file_content(mine, key="../etc/passwd"), "content.key 格式不正确"),
        (file_content(mine, key=7), "content.key 必须是不超过 300 个字符的字符串"),
    ]
    for content, message in cases:
        response = call(friend, action, content=content, **where)
        assert response["code"] == 400, (content, response)
        assert message in response["message"]
    assert not Message.objects.exists()


def test_a_file_message_with_a_url_is_unchanged(call, uploader, friend):
    content = {"type": "file", "url": "https://example.com/a.pdf", "name": "a.pdf", "size": 3}
    sent = call(uploader, "msg.send_private", to_employee_id=friend.employee_id, content=content)
    assert sent["code"] == 0
    assert Message.objects.get().file_key == ""


def test_config_storage_local_is_honest(call, uploader, settings):
    settings.MCHAT_PUBLIC_BASE_URL = "https://files.example.com"
    response = call(uploader, "config.storage")
    assert response["code"] == 0
    data = response["data"]
    assert data["backend"] == "local"
    assert data["endpoint"] == "https://files.example.com/files/"
    assert data["prefix"] == "emp_uma_001/"
    for credential in ("bucket", "region", "access_key", "secret_key", "session_token"):
        assert data[credential] is None
    assert data["max_size"] == 1024 * 1024
    assert "image/*" in data["allowed_types"]
    assert (data["upload_action"], data["download_action"]) == ("file.upload_url", "file.download_url")
    assert parse_datetime(data["expires_at"]) > timezone.now()


def test_purge_forgets_expired_spent_urls_and_abandoned_grants(call, uploader, local_storage):
    from messaging import files
    from messaging.models import UsedFileUrl

    kept = uploaded(call, uploader)
    abandoned = granted(call, uploader)
    fresh = granted(call, uploader)
    StoredFile.objects.filter(key=abandoned["key"]).update(created_at=timezone.now() - timedelta(days=2))
    StoredFile.objects.filter(key=kept["key"]).update(created_at=timezone.now() - timedelta(days=2))
    assert UsedFileUrl.objects.count() == 1  # the upload of `kept`

    urls, removed = files.file_records_purge(now=timezone.now() + timedelta(hours=1))
    assert (urls, removed) == (1, 1)
    assert set(StoredFile.objects.values_list("key", flat=True)) == {kept["key"], fresh["key"]}
    assert (local_storage / kept["key"]).exists()
