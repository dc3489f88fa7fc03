"""The terminal client renders streamed replies, typing and task states (issue 17)."""

import io
from types import SimpleNamespace

from mchat_sdk.chat import Chat, Terminal
from mchat_sdk.events import classify

ME = "emp_alice_001"
AGENT = "ai_writer_001"
INBOX = f"mchat/inbox/{ME}"


def chat() -> Chat:
    client = SimpleNamespace(employee_id=ME, groups={}, client_id=f"{ME}_term", connected=True)
    view = Chat(client, Terminal(io.StringIO(), interactive=False))
    view.names = {AGENT: "写作助手"}
    return view


def shown(view: Chat, payload: dict) -> str | None:
    return view.describe(classify(INBOX, payload, me=ME))


def private(**fields) -> dict:
    return {"from_employee_id": AGENT, "to_employee_id": ME, "conversation_type": "private", **fields}


def test_a_stream_is_printed_line_by_line_and_its_end_once():
    view = chat()
    assert "写作助手" in shown(view, private(type="stream_start", msg_id="m1", seq=3, sent_at=None))
    assert (
        shown(view, private(type="stream_delta", msg_id="m1", seq=3, offset=0, delta="第一行\n第二"))
        == "  ┆ 第一行"
    )
    assert shown(view, private(type="stream_delta", msg_id="m1", seq=3, offset=9, delta="x")) is None  # a gap
    final = shown(view, private(type="private", msg_id="m1", seq=3, content="第一行\n第二行", stream=True))
    assert final == "  ┆ 第二行\n  ✓ 回复 #3 完成"


def test_a_canceled_stream_and_a_replaced_final_text():
    view = chat()
    shown(view, private(type="stream_start", msg_id="m1", seq=3))
    shown(view, private(type="stream_delta", msg_id="m1", seq=3, offset=0, delta="一半"))
    assert (
        shown(view, private(type="stream_cancel", msg_id="m1", seq=3, content="一半"))
        == "  ┆ 一半\n  ⏹ 回复 #3 已停止"
    )
    shown(view, private(type="stream_start", msg_id="m2", seq=4))
    shown(view, private(type="stream_delta", msg_id="m2", seq=4, offset=0, delta="草稿"))
    final = shown(view, private(type="private", msg_id="m2", seq=4, content="定稿", stream=True))
    assert final.endswith("写作助手(ai_writer_001)：定稿")


def test_typing_is_shown_once_per_status_and_task_states_by_name():
    view = chat()
    typing = private(type="typing", status_text="正在查询订单…", active=True, expires_at="x")
    assert shown(view, typing) == "  … 写作助手(ai_writer_001) 正在查询订单…"
    assert shown(view, typing) is None  # renewed
    shown(view, private(type="private", msg_id="m9", seq=5, content="好了"))  # a message clears it
    assert shown(view, typing) is not None
    task = {
        "type": "task_status",
        "msg_id": "m8",
        "seq": 2,
        "state": "input-required",
        "status_text": "请提供订单号",
        "from_employee_id": ME,
        "to_employee_id": AGENT,
    }
    assert shown(view, task) == "  ◆ 任务 #2 需要补充信息：请提供订单号"
