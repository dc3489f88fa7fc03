"""Gap-free per-conversation numbering under real concurrency (run it on PostgreSQL too).

Each thread has its own database connection and transaction, as separate bridge processes
would; some transactions roll back after taking a number, which must come back.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from messaging import services
from messaging.models import Conversation, Message
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db(transaction=True)

SENDERS = 20
PER_SENDER = 10


class Abandon(Exception):
    """Raised inside a send's transaction to roll it back after the seq was taken."""


def test_concurrent_group_senders_take_unique_gap_free_numbers():
    owner = EmployeeFactory()
    senders = EmployeeFactory.create_batch(SENDERS)
    group = services.group_create(
        actor=owner, name="并发", member_ids=[s.employee_id for s in senders]
    ).group
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
                            actor=sender, group_id=group.group_id, content=f"{index}-{n}",
                            client_id=f"{sender.employee_id}_dev1", seq_id=f"s{n}",
                        )
                        if n % 3 == 2:
                            raise Abandon  # e.g. the idempotency record failed to insert
                    with lock:
                        taken.append(message.seq)
                except Abandon:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
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
    stored = list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", "sent_at"))
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
                services.message_send_private(actor=actor, to_employee_id=peer.employee_id, content=str(n))
        except BaseException as exc:  # noqa: BLE001
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
