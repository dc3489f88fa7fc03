"""bridge.handlers.validate: one reused serializer per class, no state carried between payloads."""

from __future__ import annotations

import threading

import pytest

from bridge.handlers import Request, _checker, validate, validate_many
from bridge.handlers.messages import HistoryInput, SendPrivateInput
from mchat.errors import BadRequest
from tests.factories import EmployeeFactory


def test_each_payload_gets_its_own_answer_from_the_reused_serializer():
    with pytest.raises(BadRequest) as refused:
        validate(HistoryInput, {"conversation_type": "private", "limit": 0})
    assert "limit" in str(refused.value.message)
    fields = validate(HistoryInput, {"conversation_type": "group", "group_id": "grp_1"})
    assert fields == {"conversation_type": "group", "group_id": "grp_1", "limit": 50}  # nothing left over
    with pytest.raises(BadRequest) as refused:
        validate(HistoryInput, {"conversation_type": "private"})  # its own rule (validate())
    assert "peer_employee_id" in str(refused.value.message)
    assert _checker(HistoryInput) is _checker(HistoryInput)


@pytest.mark.django_db
def test_a_batch_gets_each_payload_s_fields_or_refusal():
    alice = EmployeeFactory(employee_id="emp_alice_001")
    payloads = [
        {"to_employee_id": "emp_bob_002", "content": "一"},
        {"content": "二"},
        {"to_employee_id": "emp_carol_003", "content": {"type": "text", "text": "三"}},
    ]
    requests = [
        Request(f"{alice.employee_id}_d", f"s{n}", "msg.send_private", p, alice)
        for n, p in enumerate(payloads)
    ]
    first, second, third = validate_many(SendPrivateInput, requests)
    assert first == {"to_employee_id": "emp_bob_002", "content": "一"}
    assert isinstance(second, BadRequest) and "to_employee_id" in str(second.message)
    assert third["content"] == {"type": "text", "text": "三"}


def test_threads_do_not_share_a_serializer():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_checker(HistoryInput)))
    thread.start()
    thread.join()
    assert seen[0] is not _checker(HistoryInput)
