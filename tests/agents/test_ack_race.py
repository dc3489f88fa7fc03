"""Exactly one answer per waiting send when the agent's acknowledgement and deadline sweeps of
several processes race (threads with their own database connections; run on PostgreSQL too)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bridge import deferred
from mchat.wire import encode
from messaging import services as messaging
from messaging.models import AgentAckWait
from org import services
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db(transaction=True)

SENDS = 12
THREADS = 6


def test_acknowledgement_and_sweeps_racing_answer_each_send_exactly_once(dispatcher, published):
    alice = EmployeeFactory(employee_id="emp_alice_001")
    agent = services.employee_create(
        actor=None, name="助手", is_ai_agent=True, id_slug="race", agent={"ack_deadline_seconds": 30}
    ).employee
    client_id = f"{alice.employee_id}_dev1"
    for n in range(SENDS):
        payload = encode(
            {"action": "msg.send_private", "to_employee_id": agent.employee_id, "content": f"问题{n}"}
        )
        assert dispatcher.handle(f"mchat/msg/req/{client_id}/s{n}", payload).response is None
    assert AgentAckWait.objects.filter(state="pending").count() == SENDS
    last = AgentAckWait.objects.order_by("-seq").first().message.msg_id
    # Half of the sends are already due: sweeps and the acknowledgement compete for them.
    due = list(AgentAckWait.objects.order_by("seq").values_list("pk", flat=True))[: SENDS // 2]
    AgentAckWait.objects.filter(pk__in=due).update(deadline=timezone.now() - timedelta(seconds=1))

    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def compete(acknowledge: bool) -> None:
        try:
            start.wait(10)
            if acknowledge:
                messaging.read_ack(actor=agent, msg_id=last)
            else:
                deferred.expire_due()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=compete, args=(n == 0,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []

    for n in range(SENDS):
        answers = published.to(f"mchat/msg/resp/{client_id}/s{n}")
        assert len(answers) == 1, (n, answers)
        assert answers[0]["code"] in (0, 504)
        repeat = encode({"action": "msg.send_private", "to_employee_id": agent.employee_id, "content": "x"})
        assert dispatcher.handle(f"mchat/msg/req/{client_id}/s{n}", repeat).response == answers[0]
    states = dict(AgentAckWait.objects.values_list("seq_id", "state"))
    assert set(states.values()) <= {"acknowledged", "expired"}
    # Sends that were not yet due can only have been answered by the acknowledgement.
    not_due = AgentAckWait.objects.exclude(pk__in=due)
    assert set(not_due.values_list("state", flat=True)) == {"acknowledged"}
