"""The web client in a real browser (Debian's Chromium driven by Playwright) against a real stack
(`web_stack`: Mosquitto with its WebSockets listener and the plugin, the bridge, Django serving
the built client): two employees in two browser contexts sign in, open each other's deep link,
chat both ways, see unread counts and receipts, recall, send an image, make a group and talk in
it; markup in a message stays text; a signed-out page's credential no longer connects.

Screenshots of the main screens are kept in var/test-artifacts/web/ (under MCHAT_TEST_ARTIFACTS).
Needs the built client (`make web`; `make test` builds it first).
"""

from __future__ import annotations

import secrets
import struct
import zlib
from pathlib import Path

import pytest
from django.conf import settings

from mchat_sdk import Client
from org import services
from tests.broker_harness import mqtt_client, try_connect
from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.broker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

ARTIFACTS = ARTIFACTS_DIR / "web"
PASSWORD = "web-Passw0rd-1"
NOT_AUTHORIZED = 135
XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _built() -> bool:
    return (Path(settings.MCHAT_WEB_DIST_DIR) / "index.html").is_file()


def sign_in(browser, base: str, employee_id: str, path: str = "/"):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "Content Security Policy" in msg.text else None
        ),
    )
    page.goto(f"{base}{path}")
    page.wait_for_url("**/login/**")
    page.fill("input[name=login]", employee_id)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{path}")
    connected(page)
    page.csp_errors = errors  # type: ignore[attr-defined]
    return context, page


def connected(page) -> None:
    """Wait until the page's MQTT connection is up (the app marks it on its root element)."""
    from playwright.sync_api import expect

    expect(page.locator(".app[data-connection=connected]")).to_have_count(1)


def send(page, text: str) -> None:
    page.fill("[data-testid=composer]", text)
    page.press("[data-testid=composer]", "Enter")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def bubble(page, text: str):
    return page.locator("[data-testid=message] .message-text", has_text=text)


def test_two_employees_chat_in_the_browser(web_stack):
    assert _built(), "the web client is not built: run `make web`"
    alice = web_stack.make_employee(name="王小丽", web_password=PASSWORD)
    bob = web_stack.make_employee(name="赵大勇", web_password=PASSWORD)
    research = services.department_create(actor=None, name="研发部")
    carol = web_stack.make_employee(name="陈晓", web_password=PASSWORD, department_id=research.department_id)
    a_id, b_id, c_id = alice.employee_id, bob.employee_id, carol.employee_id
    base = web_stack.base_url
    image = png(64, 40, (51, 112, 255))

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Alice signs in through bob's deep link; bob signs in at the list.
            a_ctx, a = sign_in(browser, base, a_id, f"/c/private/{b_id}")
            b_ctx, b = sign_in(browser, base, b_id, "/")
            expect(a.locator("[data-testid=conversation-title]")).to_have_text("赵大勇")

            # Alice writes; bob sees it live in his list, unread, and in the tab title.
            send(a, "你好，下午三点开会")
            expect(bubble(a, "你好，下午三点开会")).to_be_visible()
            row_b = b.locator(f"[data-testid=conversation][data-key='private:{a_id}']")
            expect(row_b.locator("[data-testid=unread]")).to_have_text("1")
            expect(row_b).to_contain_text("你好，下午三点开会")
            expect(b).to_have_title("(1) MChat")
            shot(b, "01-list-unread")

            # Shift+Enter is a new line, Enter sends: two lines in one message.
            a.fill("[data-testid=composer]", "第一行")
            a.press("[data-testid=composer]", "Shift+Enter")
            a.type("[data-testid=composer]", "第二行")
            a.press("[data-testid=composer]", "Enter")
            expect(row_b.locator("[data-testid=unread]")).to_have_text("2")
            expect(b).to_have_title("(2) MChat")

            # Bob opens alice's deep link: the messages, unread gone, alice sees "已读".
            b.goto(f"{base}/c/private/{a_id}")
            connected(b)
            expect(bubble(b, "你好，下午三点开会")).to_be_visible()
            expect(bubble(b, "第一行\n第二行")).to_be_visible()
            expect(b).to_have_title("MChat")
            expect(
                b.locator(f"[data-testid=conversation][data-key='private:{a_id}'] [data-testid=unread]")
            ).to_have_count(0)
            mine = a.locator("[data-testid=message].mine")
            expect(mine.last.locator("[data-testid=receipt]")).to_have_text("已读")

            # Bob answers; alice, who has the conversation open, sees it at once.
            send(b, "收到，我准时到")
            expect(bubble(a, "收到，我准时到")).to_be_visible()
            expect(
                b.locator("[data-testid=message].mine").last.locator("[data-testid=receipt]")
            ).to_have_text("已读")
            shot(a, "02-conversation-receipts")

            # Alice recalls her first message.
            first = mine.filter(has_text="你好，下午三点开会")
            first.hover()
            first.locator("[data-testid=recall]").click()
            expect(a.locator("[data-testid=recalled]", has_text="你撤回了一条消息")).to_be_visible()
            expect(b.locator("[data-testid=recalled]", has_text="对方撤回了一条消息")).to_be_visible()
            expect(bubble(b, "你好，下午三点开会")).to_have_count(0)

            # An image, picked from a file: both sides see the preview.
            a.set_input_files(
                "[data-testid=file-input]",
                files=[{"name": "蓝色.png", "mimeType": "image/png", "buffer": image}],
            )
            for page in (a, b):
                img = page.locator("[data-testid=message-image]")
                expect(img).to_be_visible()
                expect(img).to_have_js_property("naturalWidth", 64)
            shot(b, "03-image")

            # A file: a card on both sides; the download goes through file.download_url.
            notes = "会议纪要：周三下午三点。\n".encode()
            a.set_input_files(
                "[data-testid=file-input]",
                files=[{"name": "会议纪要.txt", "mimeType": "text/plain", "buffer": notes}],
            )
            card = b.locator("[data-testid=file-card]", has_text="会议纪要.txt")
            expect(card).to_be_visible()
            expect(a.locator("[data-testid=file-card]", has_text="会议纪要.txt")).to_be_visible()
            with b.expect_download() as download_info:
                card.locator("button").click()
            download = download_info.value
            assert download.suggested_filename == "会议纪要.txt"
            assert Path(download.path()).read_bytes() == notes

            # Markup is text: shown literally, nothing runs, no element is made from it.
            send(a, XSS)
            expect(bubble(b, XSS)).to_be_visible()
            assert b.evaluate("window.__pwned") is None
            assert a.evaluate("window.__pwned") is None
            assert b.locator("[data-testid=messages] img[src=x]").count() == 0
            assert b.locator("[data-testid=messages] script").count() == 0

            # A group: alice creates it with bob and carol and writes; bob answers in it.
            a.click("[data-testid=tab-chats]")
            a.click("[data-testid=new-group]")
            a.fill("[data-testid=group-name]", "项目协作群")
            a.fill("[data-testid=picker-search]", "赵")
            a.check(f"[data-testid=pick-{b_id}]")
            a.fill("[data-testid=picker-search]", "陈")
            a.check(f"[data-testid=pick-{c_id}]")
            a.click("[data-testid=create-group]")
            expect(a.locator("[data-testid=conversation-title]")).to_have_text("项目协作群")
            expect(a.locator("[data-testid=notice]").first).to_contain_text("加入了群聊")
            send(a, "大家好，这是项目群")
            group_row = b.locator("[data-testid=conversation]", has_text="项目协作群")
            expect(group_row).to_contain_text("大家好，这是项目群")
            expect(group_row.locator("[data-testid=unread]")).to_have_text("1")
            group_row.click()
            expect(bubble(b, "大家好，这是项目群")).to_be_visible()
            send(b, "收到！")
            expect(bubble(a, "收到！")).to_be_visible()
            expect(
                a.locator("[data-testid=message].mine").last.locator("[data-testid=receipt]")
            ).to_contain_text("人已读")
            a.click("[data-testid=group-settings]")
            members = a.locator("[data-testid=member-list]")
            expect(members).to_contain_text("群主")
            expect(members).to_contain_text("陈晓")
            shot(a, "04-group")

            # The organisation and a phone-sized screen.
            a.click("[data-testid=tab-org]")
            expect(a.locator("[data-testid=org-tree]")).to_contain_text("赵大勇")
            expect(a.locator("[data-testid=org-tree]")).to_contain_text("研发部")
            shot(a, "05-org")
            # A profile with presence; "发消息" opens the private conversation.
            a.locator("[data-testid=person]", has_text="陈晓").click()
            profile = a.locator("[data-testid=profile]")
            expect(profile).to_contain_text(c_id)
            expect(profile).to_contain_text("离线")
            profile.locator("[data-testid=start-chat]").click()
            expect(a).to_have_url(f"{base}/c/private/{c_id}")
            expect(a.locator("[data-testid=conversation-title]")).to_have_text("陈晓")
            b.set_viewport_size({"width": 390, "height": 780})
            expect(bubble(b, "收到！")).to_be_visible()
            shot(b, "06-phone-conversation")

            assert a.csp_errors == [] and b.csp_errors == []  # type: ignore[attr-defined]

            # Signing out: the page goes to the sign-in form, its credential is dead.
            credential = a.evaluate("window.mchat.client.credential")
            a.click("[data-testid=sign-out]")
            a.wait_for_url("**/login/**")
            a.goto(f"{base}/c/private/{b_id}")
            a.wait_for_url("**/login/**")
            a_ctx.close()
            b_ctx.close()
        finally:
            browser.close()

    port = web_stack.live.broker.ws_port
    rc = try_connect(
        port, credential["username"], credential["password"], credential["client_id"], transport="websockets"
    )
    assert rc == NOT_AUTHORIZED


def test_groups_and_agents_in_the_browser(web_stack):
    """Group management (rename, add, remove, leave, dismiss with its confirmation step), an
    agent's card with its skills in the directory, and an agent that does not acknowledge in
    time: "Agent 响应超时", then its late reply."""
    assert _built(), "the web client is not built: run `make web`"
    alice = web_stack.make_employee(name="王小丽", web_password=PASSWORD)
    bob = web_stack.make_employee(name="赵大勇", web_password=PASSWORD)
    carol = web_stack.make_employee(name="陈晓", web_password=PASSWORD)
    agent = web_stack.make_employee(
        name="订单助手",
        is_ai_agent=True,
        agent={
            "capabilities": ["订单查询"],
            "skills_badge": ["实时响应"],
            "ack_deadline_seconds": 1,
            "skills": [
                {
                    "id": "track-parcel",
                    "name": "物流跟踪",
                    "description": "按订单号查询物流",
                    "tags": ["物流"],
                    "examples": ["订单 1001 到哪了？", "<b>加粗</b> 的单号"],
                }
            ],
        },
    )
    a_id, b_id, c_id, g_id = alice.employee_id, bob.employee_id, carol.employee_id, agent.employee_id
    agent_login = {
        "broker_host": "127.0.0.1",
        "broker_port": web_stack.live.port,
        "use_tls": False,
        "mqtt_username": g_id,
        "mqtt_password": web_stack.mqtt_passwords[g_id],
    }
    base = web_stack.base_url

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a_ctx, a = sign_in(browser, base, a_id, "/")
            b_ctx, b = sign_in(browser, base, b_id, "/")

            # The agents directory; a message the agent does not acknowledge in time.
            a.click("[data-testid=tab-agents]")
            card = a.locator(".agent-card", has_text="订单助手")
            expect(card).to_contain_text("订单查询")
            expect(card).to_contain_text("实时响应")
            # Its Agent Card (agent.card): skills with descriptions and examples, shown as text.
            card.locator("[data-testid=agent-skills-toggle]").click()
            skill = card.locator("[data-testid=agent-skill]", has_text="物流跟踪")
            expect(skill).to_contain_text("按订单号查询物流")
            expect(skill.locator("[data-testid=agent-skill-example]")).to_have_text(
                ["订单 1001 到哪了？", "<b>加粗</b> 的单号"]
            )
            expect(card.locator("[data-testid=agent-skills]")).to_contain_text("1 秒内确认")
            assert card.locator("[data-testid=agent-skills] b").count() == 0
            shot(a, "07-agents")
            card.locator("[data-testid=agent-chat]").click()
            expect(a).to_have_url(f"{base}/c/private/{g_id}")
            send(a, "订单 1001 到哪了？")
            expect(a.locator("[data-testid=agent-timeout]")).to_have_text("Agent 响应超时")
            shot(a, "08-agent-timeout")
            # The agent comes back and answers: the reply appears.
            with Client(agent_login, device=f"late-{secrets.token_hex(4)}", track_groups=False) as late_agent:
                late_agent.send_private(a_id, "订单 1001 已发货，预计明天送达")
                expect(bubble(a, "订单 1001 已发货，预计明天送达")).to_be_visible()

            # A group with bob; rename it, add and remove carol.
            a.click("[data-testid=tab-chats]")
            a.click("[data-testid=new-group]")
            a.fill("[data-testid=group-name]", "周会")
            a.check(f"[data-testid=pick-{b_id}]")
            a.click("[data-testid=create-group]")
            expect(a.locator("[data-testid=conversation-title]")).to_have_text("周会")
            a.click("[data-testid=group-settings]")
            a.click("[data-testid=rename]")
            a.fill("[data-testid=rename-input]", "周会（二期）")
            a.press("[data-testid=rename-input]", "Enter")
            expect(a.locator("[data-testid=conversation-title]")).to_have_text("周会（二期）")
            expect(a.locator("[data-testid=notice]", has_text="将群名称修改为“周会（二期）”")).to_be_visible()
            b_row = b.locator("[data-testid=conversation]", has_text="周会（二期）")
            expect(b_row).to_be_visible()

            a.click("[data-testid=add-members]")
            a.fill("[data-testid=picker-search]", "陈")
            a.check(f"[data-testid=pick-{c_id}]")
            a.click(".dialog .primary")
            members = a.locator("[data-testid=member-list]")
            expect(members).to_contain_text("陈晓")
            member_carol = members.locator("li", has_text="陈晓")
            member_carol.locator(".link-button.danger").click()
            expect(members).not_to_contain_text("陈晓")
            expect(a.locator("[data-testid=notice]", has_text="移出了群聊")).to_be_visible()

            # Bob leaves after confirming; alice sees the notice.
            b_row.click()
            b.click("[data-testid=group-settings]")
            b.click("[data-testid=leave-group]")
            b.click(".dialog .danger-button")
            expect(b.locator("[data-testid=composer]")).to_be_disabled()
            expect(a.locator("[data-testid=notice]", has_text="赵大勇退出了群聊")).to_be_visible()

            # Dismissing asks for a real confirmation (an auth.challenge), then the group is gone.
            a.click("[data-testid=dismiss-group]")
            dialog = a.locator("[data-testid=dismiss-dialog]")
            expect(dialog).to_contain_text("此操作不可撤销")
            shot(a, "09-dismiss-confirmation")
            dialog.locator("[data-testid=dismiss-confirm]").click()
            expect(a.locator("[data-testid=messages]")).to_contain_text("该群已解散")
            expect(a.locator("[data-testid=composer]")).to_be_disabled()
            assert a.csp_errors == [] and b.csp_errors == []  # type: ignore[attr-defined]
            a_ctx.close()
            b_ctx.close()
        finally:
            browser.close()


def test_a_dropped_connection_shows_reconnects_and_catches_up(web_stack):
    """The page's connection is taken over (the broker closes it); while it is away (its
    credential request held back) the peer writes twice. The page shows the banner, reconnects
    with a fresh credential, and shows both messages once, in order."""
    assert _built(), "the web client is not built: run `make web`"
    from playwright.sync_api import expect, sync_playwright

    alice = web_stack.make_employee(name="王小丽", web_password=PASSWORD)
    bob = web_stack.make_employee(name="赵大勇", web_password=PASSWORD)
    a_id, b_id = alice.employee_id, bob.employee_id
    bob_login = {
        "broker_host": "127.0.0.1",
        "broker_port": web_stack.live.port,
        "use_tls": False,
        "mqtt_username": b_id,
        "mqtt_password": web_stack.mqtt_passwords[b_id],
    }
    base = web_stack.base_url
    with (
        sync_playwright() as playwright,
        Client(bob_login, device=f"py-{secrets.token_hex(4)}", track_groups=False) as bob_client,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a_ctx, a = sign_in(browser, base, a_id, f"/c/private/{b_id}")
            bob_client.send_private(a_id, "在吗？")
            expect(bubble(a, "在吗？")).to_be_visible()
            credential = a.evaluate("window.mchat.client.credential")

            held = []
            a.route("**/api/web/mqtt-credential", lambda route: held.append(route))
            with a.expect_request("**/api/web/mqtt-credential"):
                # Another connection with the page's client id: the broker closes the page's.
                intruder = mqtt_client(
                    web_stack.live.broker.ws_port,
                    credential["username"],
                    credential["password"],
                    credential["client_id"],
                    transport="websockets",
                )
                intruder.close()
                banner = a.locator("[data-testid=connection-banner]")
                expect(banner).to_have_attribute("data-state", "reconnecting")
                expect(banner).to_contain_text("正在重连")
            shot(a, "10-reconnecting")
            bob_client.send_private(a_id, "错过的第一条")
            bob_client.send_private(a_id, "错过的第二条")
            for route in held:
                route.continue_()
            a.unroute("**/api/web/mqtt-credential")
            connected(a)
            expect(banner).to_have_count(0)
            expect(bubble(a, "错过的第二条")).to_be_visible()
            texts = a.locator("[data-testid=message] .message-text").all_inner_texts()
            assert texts == ["在吗？", "错过的第一条", "错过的第二条"]
            a_ctx.close()
        finally:
            browser.close()
