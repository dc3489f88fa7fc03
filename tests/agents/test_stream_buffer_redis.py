"""The stream buffer shared through Redis (issue 17): two buffer objects on one redis-server
stand for two bridge processes; one stream's appends alternate between them."""

from __future__ import annotations

import time

import pytest

from messaging import stream_buffers, streams
from messaging.models import Message
from messaging.stream_buffers import CLOSED, MISSING, OK, REPEAT, SENDER, TOO_LONG, StreamInfo
from messaging.stream_buffers_redis import RedisStreamBuffer
from tests.broker_harness import wait_until
from tests.notifications.test_celery_redis import redis_url  # noqa: F401 -- a fixture

WHERE = {"conversation_type": "private", "from_employee_id": "ai_w_001", "to_employee_id": "emp_a_001"}


@pytest.fixture
def two(redis_url):  # noqa: F811
    """Two buffers on one Redis, as two bridge processes have."""
    return RedisStreamBuffer(redis_url), RedisStreamBuffer(redis_url)


def info(msg_id: str = "msg_1", sender: int = 7) -> StreamInfo:
    return StreamInfo(msg_id, 1, sender, 3, WHERE)


def test_appends_alternating_between_processes_add_up_with_offsets_in_characters(two):
    first, second = two
    first.open(info(), "")
    pieces = ["你好", "，", "world ", "🙂", "订单已发货。"] * 20
    text = ""
    for n, piece in enumerate(pieces):
        appended = (first, second)[n % 2].append(
            "msg_1", sender_pk=7, delta=piece, repeat_key=f"c\x1f{n}", max_chars=12_000
        )
        assert (appended.status, appended.seq, appended.offset) == (OK, 3, len(text))
        text += piece
        assert appended.length == len(text)
    assert first.text("msg_1") == second.text("msg_1") == text
    # A repeat of a recent append reaches the other process: the same answer, nothing appended.
    again = first.append("msg_1", sender_pk=7, delta="订单已发货。", repeat_key="c\x1f99", max_chars=12_000)
    assert (again.status, again.offset, again.length) == (REPEAT, len(text) - 6, len(text))
    assert first.text("msg_1") == text


def test_deliveries_are_coalesced_across_processes_and_handed_out_once(two):
    first, second = two
    first.open(info(), "")
    got = []

    def collect(appended) -> None:
        if appended.delivery is not None:
            got.append(appended.delivery)

    collect(first.append("msg_1", sender_pk=7, delta="第一段", repeat_key="", max_chars=100))
    assert [(d.offset, d.delta, d.length, d.info) for d in got] == [(0, "第一段", 3, info())]
    started = time.monotonic()
    for n in range(10):  # within the interval: held back, whichever process serves them
        collect(
            (second, first)[n % 2].append("msg_1", sender_pk=7, delta=f"{n}", repeat_key="", max_chars=100)
        )
    # At most one delivery per interval in all (a slow machine may let an interval pass).
    assert len(got) <= 2 + int((time.monotonic() - started) / stream_buffers.delta_interval())

    def due_deliveries():
        found = first.due().deliveries + second.due().deliveries
        got.extend(found)
        return "".join(d.delta for d in got) == "第一段0123456789"

    assert wait_until(due_deliveries, timeout=5)
    text = ""
    for delivery in got:  # each at its offset, nothing twice
        assert delivery.offset == len(text)
        text += delivery.delta
    assert first.due().deliveries == second.due().deliveries == []


def test_close_refusals_and_limits_are_shared(two):
    first, second = two
    assert first.append("msg_1", sender_pk=7, delta="x", repeat_key="", max_chars=9).status == MISSING
    first.open(info(), "存下的")
    second.open(info(), "another process loads it again: kept as is")
    assert second.text("msg_1") == "存下的"
    assert second.append("msg_1", sender_pk=8, delta="x", repeat_key="", max_chars=9).status == SENDER
    assert second.append("msg_1", sender_pk=7, delta="1234567", repeat_key="", max_chars=9).status == TOO_LONG
    assert first.close("msg_1", sender_pk=8).status == SENDER
    closed = first.close("msg_1", sender_pk=None)
    assert (closed.status, closed.info, closed.text) == (OK, info(), "存下的")
    assert second.append("msg_1", sender_pk=7, delta="x", repeat_key="", max_chars=9).status == CLOSED
    assert second.close("msg_1", sender_pk=7).status == CLOSED
    first.reopen("msg_1")  # storing the final text failed: appends go on
    assert second.append("msg_1", sender_pk=7, delta="x", repeat_key="", max_chars=9).status == OK
    assert first.close("msg_1", sender_pk=7).text == "存下的x"
    assert first.held(["msg_1", "msg_2"]) == {"msg_1"}
    second.discard("msg_1")
    assert first.held(["msg_1"]) == set() and first.text("msg_1") is None


def test_stores_and_idle_streams_go_to_one_process(two, monkeypatch):
    monkeypatch.setattr(stream_buffers, "STREAM_PERSIST_SECONDS", 0.2)
    monkeypatch.setattr(stream_buffers, "STREAM_IDLE_SECONDS", 0.5)
    first, second = two
    first.open(info("msg_a"), "")
    first.open(info("msg_b"), "")
    first.append("msg_a", sender_pk=7, delta="半句", repeat_key="", max_chars=100)
    second.append("msg_b", sender_pk=7, delta="另一句", repeat_key="", max_chars=100)
    stores, idle = [], []

    def collect() -> bool:
        for buffer in two:
            due = buffer.due()
            stores.extend(due.stores)
            idle.extend(due.idle)
        return len(idle) == 2

    assert wait_until(collect, timeout=10)
    assert sorted((s.info.msg_id, s.text) for s in stores) == [("msg_a", "半句"), ("msg_b", "另一句")]
    assert sorted((i.msg_id, text) for i, text in idle) == [("msg_a", "半句"), ("msg_b", "另一句")]
    assert first.append("msg_a", sender_pk=7, delta="x", repeat_key="", max_chars=100).status == CLOSED


def test_redis_down_is_503_and_the_periodic_job_carries_on():
    from bench.services import free_port

    down = RedisStreamBuffer(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(stream_buffers.BufferUnavailable) as refused:
        down.append("msg_1", sender_pk=7, delta="x", repeat_key="", max_chars=9)
    assert refused.value.code == 503
    stream_buffers.install(down)
    streams.streams_tick()  # logged, not raised


# --- the services on the shared buffer ---------------------------------------------------------


@pytest.fixture
def shared(two):
    """The services use `first`; `use(second)` moves them to the other process."""
    stream_buffers.install(two[0])
    yield two
    two[0].forget()


def ok(response):
    assert response["code"] == 0, response
    return response["data"]


@pytest.mark.django_db
def test_a_stream_served_by_two_processes_is_stored_whole(shared, call, published, make_agent, alice):
    first, second = shared
    agent = make_agent("写作助手", "writer")
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    pieces = [f"第{n}句。" for n in range(200)]
    for n, piece in enumerate(pieces):
        stream_buffers.install(shared[n % 2])
        answer = ok(call(agent, "msg.stream_append", msg_id=msg_id, delta=piece))
        assert answer["offset"] == sum(len(p) for p in pieces[:n])
    # Refusals hold whichever process answers.
    assert call(alice, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 403
    [shown] = ok(call(alice, "msg.history", conversation_type="private", peer_employee_id=agent.employee_id))[
        "messages"
    ]
    assert (shown["streaming"], shown["content"]) == (True, "".join(pieces))
    stream_buffers.install(first)
    ended = ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert ended["length"] == len("".join(pieces))
    assert Message.objects.get().content == "".join(pieces)
    stream_buffers.install(second)
    assert call(agent, "msg.stream_append", msg_id=msg_id, delta="x")["code"] == 409
    deltas = [p for p in published.to(f"mchat/inbox/{alice.employee_id}") if p["type"] == "stream_delta"]
    text = ""
    for delta in deltas:
        assert delta["offset"] == len(text)
        text += delta["delta"]
    assert "".join(pieces).startswith(text) and len(deltas) < 200


@pytest.mark.django_db
def test_a_stream_redis_lost_continues_from_the_stored_text(shared, call, make_agent, alice, monkeypatch):
    monkeypatch.setattr(stream_buffers, "STREAM_PERSIST_SECONDS", 0.1)
    first, _second = shared
    agent = make_agent("写作助手", "writer")
    msg_id = ok(call(agent, "msg.stream_start", to_employee_id=alice.employee_id))["msg_id"]
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="存下的"))

    def stored() -> bool:
        streams.streams_tick()
        return Message.objects.get().content == "存下的"

    assert wait_until(stored, timeout=10)
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="丢失的"))
    first.forget()  # Redis restarted without its data
    ok(call(agent, "msg.stream_append", msg_id=msg_id, delta="，继续"))
    ok(call(agent, "msg.stream_end", msg_id=msg_id))
    assert Message.objects.get().content == "存下的，继续"
