"""Two bridge processes on the shared subscription, PostgreSQL, crossing traffic: no deadlock.

Six employees in a ring and one group. Each round every employee, from its own connection,
publishes at once: a private send to each neighbour (so every pair's conversation gets sends
in both directions), a group send, and read acks of what its neighbours and the group sent it
the round before. Mosquitto hands the requests to the two bridges in turn, so one employee's
requests are served by both processes at the same moment, mixed in batches with everyone
else's: sends lock conversations then the senders' read positions, acks lock read positions
then receipt tallies (which reference the conversation and the message). The rows are locked
in one order (docs/architecture.md, "Row locks"); what must hold: PostgreSQL counts no deadlock
(`pg_stat_database.deadlocks`), no bridge logs a batch that failed, every request is answered
with code 0, and every conversation's numbers are gap-free.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection

from messaging import services as messaging_services
from messaging.models import Conversation, Message
from tests.broker_harness import wait_until
from tests.resilience.conftest import bridge_log, wait_serving

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

PEOPLE = 6
ROUNDS = 12


def deadlocks_counted() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_two_bridges_serving_crossing_sends_and_acks_never_deadlock(live, bridges):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite has one writer at a time)")
    live.stop_bridge()  # this test runs two real processes
    people = [live.issue(f"Ring{n}") for n in range(PEOPLE)]
    ids = [employee.employee_id for employee, _pw in people]
    group_id = messaging_services.group_create(
        actor=people[0][0], name="ring", member_ids=ids[1:]
    ).group.group_id
    devices = [live.connect(employee, pw, device="desk") for employee, pw in people]
    deadlocks_before = deadlocks_counted()

    first = bridges(live, "locks", shared=True)
    second = bridges(live, "locks2", shared=True)
    processes = (first, second)
    for process in processes:
        assert wait_until(lambda p=process: "subscribed to" in p.log_tail(10**6), timeout=60), bridge_log(
            process
        )
    wait_serving(devices[0], first)

    # Messages each employee received last round: private ones by sender, and one group message.
    inbox: dict[int, dict[str, str]] = {n: {} for n in range(PEOPLE)}
    answers: dict[tuple[int, str], dict] = {}

    def requests_of(n: int, round_: int) -> list[tuple[str, dict]]:
        left, right = (n - 1) % PEOPLE, (n + 1) % PEOPLE

        def ack(key: str, where: dict) -> dict | None:
            msg_id = inbox[n].get(key)
            return msg_id and {"action": "msg.read_ack", "msg_id": msg_id, **where}

        def send(to: int) -> dict:
            return {"action": "msg.send_private", "to_employee_id": ids[to], "content": f"r{round_} {n}>{to}"}

        bodies = [
            send(right),
            ack(ids[left], {"conversation_type": "private", "peer_employee_id": ids[left]}),
            {"action": "msg.send_group", "group_id": group_id, "content": f"r{round_} {n}>all"},
            ack(group_id, {"conversation_type": "group", "group_id": group_id}),
            send(left),
            ack(ids[right], {"conversation_type": "private", "peer_employee_id": ids[right]}),
        ]
        return [(f"r{round_}-{index}", body) for index, body in enumerate(bodies) if body]

    for round_ in range(ROUNDS):
        planned = {n: requests_of(n, round_) for n in range(PEOPLE)}

        def publish(n: int, planned: dict = planned) -> None:
            for seq_id, body in planned[n]:
                devices[n].publish_request(seq_id, json.dumps(body).encode())

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(PEOPLE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for n in range(PEOPLE):
            for seq_id, body in planned[n]:
                try:
                    answer = devices[n].response(seq_id, timeout=30)
                except TimeoutError:
                    pytest.fail(
                        f"{ids[n]} {seq_id} {body['action']} unanswered"
                        + bridge_log(first)
                        + bridge_log(second)
                    )
                assert answer["code"] == 0, (body, answer)
                answers[(n, seq_id)] = answer
                if body["action"] == "msg.send_private":
                    receiver = ids.index(body["to_employee_id"])
                    inbox[receiver][ids[n]] = answer["data"]["msg_id"]
                elif body["action"] == "msg.send_group":
                    for other in range(PEOPLE):
                        if other != n:
                            inbox[other][group_id] = answer["data"]["msg_id"]

    for process in processes:
        process.stop(timeout=15)  # a backend that ends flushes its statistics
    logs = "".join(process.log_path.read_text(errors="replace") for process in processes)
    deadlocks = deadlocks_counted() - deadlocks_before

    assert deadlocks == 0, f"PostgreSQL counted {deadlocks} deadlocks" + logs[-4000:]
    assert "deadlock" not in logs.lower(), logs[-4000:]
    assert "failed to commit" not in logs, logs[-4000:]
    assert " ERROR " not in logs, logs[-4000:]
    sends = PEOPLE * 3 * ROUNDS
    assert len(answers) == sends + PEOPLE * 3 * (ROUNDS - 1)  # every round but the first acks 3 each
    # Every conversation numbered its messages 1..N, whoever stored them.
    for conversation in Conversation.objects.all():
        seqs = sorted(Message.objects.filter(conversation=conversation).values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), conversation.pk
        assert conversation.last_seq == len(seqs)
    assert Message.objects.count() == sends
