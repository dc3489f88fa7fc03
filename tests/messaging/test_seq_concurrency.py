"""Gap-free per-conversation numbering under real concurrency (run it on PostgreSQL too).

Each thread has its own database connection and transaction, as separate bridge processes
would; some transactions roll back after taking a number, which must come back.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from messaging import services
from messaging.models import Conversation, Message, ReceiptTally
from tests.factories import EmployeeFactory, private_message_send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def patient_sqlite_writers(monkeypatch):
    """SQLite serialises every writer: with 20 threads queued for its one lock on a busy
    machine, the last can wait longer than the 5 s a request may (settings). These tests are
    about numbering, not about that bound, so their connections wait up to a minute."""
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 60)


SENDERS = 20
PER_SENDER = 10


class Abandon(Exception):
    """Raised inside a send's transaction to roll it back after the seq was taken."""


def test_concurrent_group_senders_take_unique_gap_free_numbers():
    owner = EmployeeFactory()
    senders = EmployeeFactory.create_batch(SENDERS)
    group = services.group_create(actor=owner, name="并发", member_ids=[s.employee_id for s in senders]).group
    start = threading.Barrier(SENDERS)
    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(sender, index: int) -> None:
        try:
            start.wait(30)
            for n in range(PER_SENDER):
                try:
                    with transaction.atomic():
                        message = services.message_send_group(
                            actor=sender,
                            group_id=group.group_id,
                            content=f"{index}-{n}",
                            client_id=f"{sender.employee_id}_dev1",
                            seq_id=f"s{n}",
                        )
                        if n % 3 == 2:
                            raise Abandon  # e.g. the idempotency record failed to insert
                    with lock:
                        taken.append(message.seq)
                except Abandon:
                    pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(s, i)) for i, s in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    committed = SENDERS * sum(1 for n in range(PER_SENDER) if n % 3 != 2)
    assert sorted(taken) == list(range(1, committed + 1))
    conversation = Conversation.objects.get(group=group)
    assert conversation.last_seq == committed
    stored = list(
        Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", "sent_at")
    )
    assert [seq for seq, _ in stored] == list(range(1, committed + 1))
    # sent_at is taken under the conversation's lock: it never goes back as seq goes up
    assert [at for _, at in stored] == sorted(at for _, at in stored)


def test_concurrent_first_messages_of_a_pair_share_one_conversation():
    alice, bob = EmployeeFactory(), EmployeeFactory()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def send(actor, peer) -> None:
        try:
            start.wait(30)
            for n in range(5):
                private_message_send(actor, peer, str(n))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=pair) for pair in ((alice, bob), (bob, alice))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]
    (conversation,) = Conversation.objects.filter(kind="private")
    assert sorted(Message.objects.values_list("seq", flat=True)) == list(range(1, 11))
    assert conversation.last_seq == 10


def test_concurrent_group_acks_and_flushes_agree_on_the_count(published, settings):
    """Every ack flushes at once (interval 0): acks and flushes contend for the same rows."""
    settings.MCHAT_RECEIPT_INTERVAL_SECONDS = 0
    owner = EmployeeFactory()
    readers = EmployeeFactory.create_batch(SENDERS)
    group = services.group_create(actor=owner, name="回执", member_ids=[r.employee_id for r in readers]).group
    messages = [
        services.message_send_group(actor=owner, group_id=group.group_id, content=str(n)) for n in range(3)
    ]
    start = threading.Barrier(SENDERS)
    errors: list[BaseException] = []

    def ack(reader) -> None:
        try:
            start.wait(30)
            for message in messages:
                services.read_ack(actor=reader, msg_id=message.msg_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ack, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    receipts = [
        p for p in published.to(f"mchat/inbox/{owner.employee_id}") if p.get("type") == "read_receipt"
    ]
    # Threads publish after their own commits, so arrival order may differ from commit order;
    # the highest count is what a client shows.
    best = {m.msg_id: max(r["read_count"] for r in receipts if r["msg_id"] == m.msg_id) for m in messages}
    assert best == {m.msg_id: SENDERS for m in messages}
    assert {r["member_count"] for r in receipts} == {SENDERS}
    assert not ReceiptTally.objects.filter(pending=True).exists()
