"""Conversations: the private conversation of a pair, created with its read positions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from messaging import selectors
from messaging.models import Conversation, ReadPosition
from org.models import Employee


def private_conversation_get_or_create(*, a: Employee, b: Employee) -> Conversation:
    low, high = selectors.private_pair(a, b)
    with transaction.atomic():  # never a conversation without its read positions
        conversation, created = Conversation.objects.get_or_create(
            kind=Conversation.Kind.PRIVATE,
            employee_low=low,
            employee_high=high,
            defaults={"last_activity_at": timezone.now()},
        )
        if created:
            ReadPosition.objects.bulk_create(
                [
                    ReadPosition(conversation=conversation, employee=e)
                    for e in {low.pk: low, high.pk: high}.values()
                ]
            )
    # The caller's objects: no extra queries for the employee ids in payloads.
    conversation.employee_low, conversation.employee_high = low, high
    return conversation


def private_conversations_get_or_create(
    pairs: Sequence[tuple[Employee, Employee]], *, found: Mapping[tuple[int, int], int]
) -> dict[tuple[int, int], int]:
    """The private conversation id of each pair, by selectors.private_key: those in `found`
    (looked up already), private_conversation_get_or_create for each other pair."""
    wanted = {selectors.private_key(a, b): selectors.private_pair(a, b) for a, b in pairs}
    conversations = {}
    # In key order, so two processes creating the same new pairs take them in the same order.
    for key, (low, high) in sorted(wanted.items()):
        pk = found.get(key)
        conversations[key] = pk if pk is not None else private_conversation_get_or_create(a=low, b=high).pk
    return conversations


def conversation_loaded(pk: int) -> Conversation:
    return Conversation.objects.select_related("group", "employee_low", "employee_high").get(pk=pk)
