"""Agents as colleagues in the browser (issue 17 item 5): an mchat_sdk agent runtime answers a
person signed in in Debian's Chromium. Its "thinking" status shows and goes when its streamed
reply starts; the reply grows in place while it is written and is then shown once, as one message,
also after a reload; the task state of the person's message moves from 处理中 to 已完成; Stop on
another stream reaches the agent; the person cancels a task that is still open; in a group she
only belongs to there is no Stop, and the owner's cancel shows as stopped. A colleague's
"对方正在输入…" shows in the list and the conversation and expires, and the page tells the
colleague when the person types.

Screenshots in var/test-artifacts/web/ (MCHAT_TEST_ARTIFACTS). Needs the built client (`make web`).
"""

from __future__ import annotations

import secrets
import threading

import pytest

from mchat_sdk import Agent, Client
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.web.test_browser_chat import (
    PASSWORD,
    _built,
    bubble,
    connected,
    send,
    shot,
    sign_in,
)

pytestmark = [
    pytest.mark.broker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

FIRST = "MChat 是企业即时通讯。"
SECOND = "它支持流式回复。"
WAIT = 60  # seconds a handler waits for the test's next step at most


def login(web_stack, employee_id: str) -> dict:
    return {
        "broker_host": "127.0.0.1",
        "broker_port": web_stack.live.port,
        "use_tls": False,
        "mqtt_username": employee_id,
        "mqtt_password": web_stack.mqtt_passwords[employee_id],
    }


def test_an_agent_streams_reports_its_task_and_is_stopped_in_the_browser(web_stack):
    assert _built(), "the web client is not built: run `make web`"
    alice = web_stack.make_employee(name="王小丽", web_password=PASSWORD)
    bob = web_stack.make_employee(name="赵大勇", web_password=PASSWORD)
    writer = web_stack.make_employee(
        name="写作助手",
        is_ai_agent=True,
        agent={"capabilities": ["写作"], "ack_deadline_seconds": 30},
    )
    a_id, b_id, w_id = alice.employee_id, bob.employee_id, writer.employee_id
    base = web_stack.base_url

    # What the test lets the agent do next, and what the agent saw.
    status_shown, first_shown = threading.Event(), threading.Event()
    stream_stopped, task_canceled = threading.Event(), threading.Event()
    never = threading.Event()

    def answer(incoming):
        if incoming.text.startswith("介绍"):
            incoming.status("正在查阅资料…", ttl_seconds=60)
            status_shown.wait(WAIT)
            with incoming.stream() as reply:
                reply.append(FIRST)
                first_shown.wait(WAIT)
                reply.append(SECOND)
        elif incoming.text.startswith("长文"):
            with incoming.stream() as reply:
                while not reply.canceled:
                    reply.append("很长的段落。")
                    never.wait(0.1)  # the agent's own pace of writing
            stream_stopped.set()
        elif incoming.text.startswith("排队"):
            incoming.cancel_event.wait(WAIT)
            if incoming.canceled:
                task_canceled.set()

    from playwright.sync_api import expect, sync_playwright

    agent = Agent(Client(login(web_stack, w_id), device="agent", request_timeout=20.0), answer)
    agent.start()
    bob_client = Client(login(web_stack, b_id), device=f"py-{secrets.token_hex(4)}", track_groups=False)
    bob_client.connect()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                a_ctx, a = sign_in(browser, base, a_id, f"/c/private/{w_id}")
                typing = a.locator("[data-testid=typing]")
                replies = a.locator("[data-testid=message]:not(.mine)")
                streaming = a.locator("[data-testid=message][data-streaming=true]")

                # The agent's status first, then its streamed reply, which clears the status.
                send(a, "介绍一下 MChat")
                expect(typing).to_have_text("正在查阅资料…")
                shot(a, "11-agent-thinking")
                status_shown.set()
                expect(streaming).to_have_count(1)
                expect(streaming.locator(".message-text")).to_have_text(FIRST)
                expect(streaming.locator("[data-testid=streaming]")).to_have_text("生成中…")
                expect(streaming.locator("[data-testid=stop-stream]")).to_be_visible()
                expect(typing).to_have_count(0)
                mine = a.locator("[data-testid=message].mine", has_text="介绍一下 MChat")
                expect(mine.locator("[data-testid=task-state]")).to_have_attribute("data-state", "working")
                expect(mine.locator("[data-testid=task-state]")).to_have_text("处理中")
                shot(a, "12-agent-streaming")

                # The rest arrives; the stream becomes the final message, once; the task completes.
                first_shown.set()
                expect(bubble(a, FIRST + SECOND)).to_have_count(1)
                expect(streaming).to_have_count(0)
                expect(replies).to_have_count(1)
                expect(mine.locator("[data-testid=task-state]")).to_have_text("已完成")
                expect(mine.locator("[data-testid=cancel-task]")).to_have_count(0)
                shot(a, "13-agent-final")
                a.reload()
                connected(a)
                expect(bubble(a, FIRST + SECOND)).to_have_count(1)
                expect(replies).to_have_count(1)
                expect(mine.locator("[data-testid=task-state]")).to_have_text("已完成")

                # Stop on a stream that would not end by itself: the agent is told and stops.
                send(a, "长文：写一篇很长的文章")
                expect(streaming).to_have_count(1)
                expect(streaming.locator(".message-text")).to_contain_text("很长的段落。")
                streaming.locator("[data-testid=stop-stream]").click()
                assert stream_stopped.wait(30), "the agent did not see the cancel"
                expect(streaming).to_have_count(0)
                stopped = a.locator("[data-testid=message]", has=a.locator("[data-testid=stream-stopped]"))
                expect(stopped).to_have_count(1)
                expect(stopped.locator(".message-text")).to_contain_text("很长的段落。")
                expect(stopped.locator("[data-testid=stream-stopped]")).to_have_text("已停止生成")
                shot(a, "14-agent-stopped")

                # A task still open is canceled by its sender; the agent is told.
                send(a, "排队：整理上月的订单")
                queued = a.locator("[data-testid=message].mine", has_text="排队：整理上月的订单")
                expect(queued.locator("[data-testid=task-state]")).to_have_text("处理中")
                queued.locator("[data-testid=cancel-task]").click()
                expect(queued.locator("[data-testid=task-state]")).to_have_text("已取消")
                assert task_canceled.wait(30), "the agent did not see the task canceled"
                expect(queued.locator("[data-testid=cancel-task]")).to_have_count(0)
                shot(a, "15-task-canceled")
                a.set_viewport_size({"width": 390, "height": 780})
                expect(queued.locator("[data-testid=task-state]")).to_be_visible()
                shot(a, "15-task-canceled-phone")
                a.set_viewport_size({"width": 1280, "height": 800})

                # In a group alice only belongs to, she sees a stream without Stop; the owner stops it.
                gid = bob_client.request("group.create", name="写作小组", member_ids=[a_id, w_id])["group_id"]
                a.goto(f"{base}/c/group/{gid}")
                connected(a)
                expect(a.locator(".pane-subtitle")).to_have_text("3 人")  # the group's members are known
                started = agent.client.stream_start(f"group:{gid}")
                agent.client.stream_append(started["msg_id"], "群里的流式回复")
                expect(streaming.locator(".message-text")).to_have_text("群里的流式回复")
                expect(streaming.locator("[data-testid=stop-stream]")).to_have_count(0)
                bob_client.stream_cancel(started["msg_id"])
                expect(streaming).to_have_count(0)
                expect(a.locator("[data-testid=stream-stopped]")).to_have_text("已停止生成")

                # A colleague: alice's typing reaches him; his shows in her list and pane, then expires.
                bob_client.send_private(a_id, "周五一起吃饭吗？")
                a.goto(f"{base}/c/private/{b_id}")
                connected(a)
                expect(bubble(a, "周五一起吃饭吗？")).to_be_visible()
                a.locator("[data-testid=composer]").press_sequentially("好的")
                seen = bob_client.wait_event(
                    lambda e: e.data.get("from_employee_id") == a_id and e.data.get("active") is True,
                    kind="typing",
                    timeout=15,
                )
                assert seen.data["conversation_type"] == "private"
                bob_client.typing(f"private:{a_id}")
                expect(typing).to_have_text("对方正在输入…")
                row = a.locator(f"[data-testid=conversation][data-key='private:{b_id}']")
                expect(row.locator("[data-testid=list-typing]")).to_have_text("对方正在输入…")
                shot(a, "16-typing")
                expect(typing).to_have_count(0, timeout=15_000)  # a person's indicator lasts ~6 s
                expect(row.locator("[data-testid=list-typing]")).to_have_count(0)

                assert a.csp_errors == []  # type: ignore[attr-defined]
                a_ctx.close()
            finally:
                browser.close()
    finally:
        bob_client.close(end_session=True)
        agent.stop(timeout=10, end_session=True)
