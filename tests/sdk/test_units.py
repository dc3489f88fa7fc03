"""The SDK's pure parts: connection files, typed errors, event decoding; and no Django inside."""

import json
import subprocess
import sys

import pytest

from mchat_sdk import errors
from mchat_sdk.connection import ConnectionInfo
from mchat_sdk.events import Conversation, classify, content_text

CONNECTION = {
    "broker_host": "127.0.0.1",
    "broker_port": 1884,
    "use_tls": False,
    "mqtt_username": "emp_zhangsan_001",
    "mqtt_password": "secret",
}


@pytest.mark.parametrize(
    "document",
    [
        CONNECTION,
        {"employee_id": "emp_zhangsan_001", "mqtt_connection": CONNECTION},
        {"code": 0, "message": "ok", "data": {"employee_id": "x", "mqtt_connection": CONNECTION}},
    ],
)
def test_a_connection_file_may_hold_the_object_or_a_response_that_contains_it(tmp_path, document):
    path = tmp_path / "login.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    info = ConnectionInfo.from_file(path)
    assert (info.broker_host, info.broker_port, info.use_tls) == ("127.0.0.1", 1884, False)
    assert info.employee_id == "emp_zhangsan_001"
    assert info.mqtt_password == "secret"


def test_a_document_without_a_connection_is_refused():
    with pytest.raises(ValueError, match="mqtt_connection"):
        ConnectionInfo.from_mapping({"employee_id": "emp_x_001"})


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, errors.BadRequest),
        (401, errors.Unauthenticated),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (429, errors.RateLimited),
        (500, errors.ServerError),
        (504, errors.Timeout),
        (418, errors.ServerError),
    ],
)
def test_each_response_code_has_its_error_class(code, cls):
    error = errors.error_for({"seq_id": "s1", "code": code, "message": "m", "data": None}, action="x.y")
    assert type(error) is cls
    assert isinstance(error, errors.MChatError)
    assert (error.code, error.message, error.action, error.seq_id) == (code, "m", "x.y", "s1")


def test_rate_limited_and_server_errors_expose_their_data():
    limited = errors.error_for({"code": 429, "message": "慢点", "data": {"retry_after_ms": 250}})
    assert limited.retry_after_ms == 250
    failed = errors.error_for({"code": 500, "message": "服务端错误", "data": {"error_id": "abc"}})
    assert failed.error_id == "abc"


def test_deliveries_are_classified_by_topic_and_payload():
    me = "emp_b_001"
    private = classify(
        "mchat/inbox/emp_b_001",
        {"msg_id": "m1", "type": "private", "from_employee_id": "emp_a_001", "content": "hi", "seq": 3},
        me=me,
    )
    assert private.kind == "message"
    assert private.message.conversation == Conversation("private", "emp_a_001")
    assert (private.message.text, private.message.seq) == ("hi", 3)

    own_copy = classify(
        "mchat/inbox/emp_b_001",
        {"msg_id": "m2", "type": "private", "from_employee_id": me, "to_employee_id": "emp_c_001"},
        me=me,
    )
    assert own_copy.message.conversation == Conversation("private", "emp_c_001")

    group = classify(
        "mchat/group/grp_1",
        {
            "msg_id": "m3",
            "group_id": "grp_1",
            "from_employee_id": "emp_a_001",
            "content": {"type": "text", "text": "x"},
        },
        me=me,
    )
    assert group.message.conversation == Conversation("group", "grp_1")
    assert group.message.text == "x"

    notice = classify(
        "mchat/inbox/emp_b_001", {"notify_id": "n1", "type": "member_joined", "body": {}}, me=me
    )
    assert notice.kind == "notification"
    assert classify(
        "mchat/inbox/emp_b_001", {"type": "read_receipt", "reader_id": "emp_a_001"}, me=me
    ).kind == ("receipt")
    assert classify("mchat/inbox/emp_b_001", {"type": "recall", "msg_id": "m1"}, me=me).kind == "recall"
    status = classify("mchat/status/emp_a_001", {"status": "online"}, me=me)
    assert (status.kind, status.employee_id) == ("status", "emp_a_001")
    assert classify("mchat/profile/emp_a_001", {"event": "updated"}, me=me).kind == "profile"
    assert classify("mchat/system/notify", {"notify_id": "n2"}, me=me).kind == "system"
    assert classify("mchat/inbox/emp_b_001", {"surprise": 1}, me=me).kind == "other"


def test_content_is_rendered_as_one_line_for_every_type():
    assert content_text("你好") == "你好"
    assert content_text({"type": "text", "text": "你好"}) == "你好"
    assert content_text({"type": "image", "url": "https://x/1.png"}) == "[图片] https://x/1.png"
    assert (
        content_text({"type": "file", "name": "报告.pdf", "url": "https://x/r"})
        == "[文件] 报告.pdf https://x/r"
    )
    assert content_text(None) == ""


def test_conversations_parse_from_bare_ids_and_keys():
    assert Conversation.parse("grp_0a1") == Conversation("group", "grp_0a1")
    assert Conversation.parse("emp_lisi_002") == Conversation("private", "emp_lisi_002")
    assert Conversation.parse("private:ai_sales_001") == Conversation("private", "ai_sales_001")
    assert Conversation("group", "grp_1").fields() == {"conversation_type": "group", "group_id": "grp_1"}


def test_the_sdk_does_not_import_django():
    code = "import sys, mchat_sdk, mchat_sdk.chat; print(sorted(m for m in sys.modules if m.startswith('django')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
