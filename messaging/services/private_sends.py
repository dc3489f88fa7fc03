"""msg.send_private (spec 3.11): one request or many at once, and the one-statement path
for pairs this process has seen (private_sends_known, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from mchat.db import rows_source
from mchat.errors import MChatError, NotFound
from messaging import selectors
from messaging.content import Content, content_parse
from messaging.files import file_reference_check
from messaging.models import Conversation, Message
from messaging.services.conversations import private_conversations_get_or_create
from messaging.services.messages import message_of_request
from messaging.services.pair_cache import PRIVATE_CONVERSATION_IDS
from messaging.services.store import AssumptionFailed, Post, messages_post
from org.models import Employee


def message_send_private(
    *,
    actor: Employee,
    to_employee_id: str,
    content,
    client_id: str = "",
    seq_id: str = "",
) -> Message:
    """A private message to an active employee (oneself included: a note to self).

    Delivered to the recipient's inbox and, for the sender's other devices, to the sender's.
    A repeated (client_id, seq_id) returns the message it created and delivers nothing again.
    """
    send = PrivateSend(actor, to_employee_id, content, client_id, seq_id)
    try:
        with transaction.atomic():
            (result,) = messages_send_private([send])
    except IntegrityError:
        # The unique (client_id, seq_id) insert clashed: only then is the earlier copy looked
        # up, so the common path pays no query for it.
        if not seq_id:
            raise
        recipient = selectors.peer_get(employee_id=to_employee_id, active=True)
        return message_of_request(
            selectors.private_conversation(a=actor, b=recipient), client_id=client_id, seq_id=seq_id
        )
    if isinstance(result, MChatError):
        raise result
    return result


@dataclass(frozen=True)
class PrivateSend:
    """One msg.send_private request, as messages_send_private takes it."""

    actor: Employee
    to_employee_id: str
    content: Any  # as the request carried it; content_parse decides
    client_id: str = ""
    seq_id: str = ""


def messages_send_private(sends: Sequence[PrivateSend]) -> list[Message | MChatError]:
    """message_send_private for many requests at once, in a fixed number of queries.

    Each send gets its Message, or the refusal it would get alone (invalid content, unknown
    or former recipient, a file it may not use); refusals write nothing. Sends to one
    conversation take consecutive numbers in the order given. All or nothing for the rest: a
    (client_id, seq_id) that already made a message raises IntegrityError, and the caller
    retries the sends one at a time (message_send_private returns the earlier message).
    The conversations' rows are locked in id order, so two batches of sends alone cannot
    deadlock (a batch that also holds other locks still may: PostgreSQL then aborts it and
    the dispatcher serves its requests one by one).

    In two steps for callers that decide something between them (the bridge's batch handler
    opens a transaction only when an answer waits for an AI agent): private_sends_check, then
    private_sends_store.
    """
    return private_sends_store(private_sends_check(sends))


@dataclass
class CheckedSends:
    """private_sends_check's outcome: a refusal per refused send, the rest ready to store."""

    results: list[Message | MChatError | None]
    accepted: list[tuple[int, PrivateSend, Content, Employee]]  # (index, send, content, recipient)
    conversations: dict[tuple[int, int], Conversation]  # by selectors.private_key

    @property
    def recipients(self) -> list[tuple[Employee, Employee]]:
        """(sender, recipient) of each accepted send."""
        return [(send.actor, recipient) for _index, send, _content, recipient in self.accepted]


def private_sends_check(
    sends: Sequence[PrivateSend], *, known: Mapping[str, Employee | None] | None = None
) -> CheckedSends:
    """The refusals of messages_send_private, and the conversation of each other send (a
    missing one is created, committed on its own: a conversation without messages is
    harmless).

    `known`: recipients found already, by employee_id (None: unknown or no longer active),
    as the bridge's dispatcher hands them over. A send whose recipient is known and whose
    pair has a conversation this process has seen costs no query; the others, one in all,
    plus one transaction per new conversation.
    """
    results: list[Message | MChatError | None] = [None] * len(sends)
    recipients, found = _recipients_with_conversations(sends, known or {})
    accepted: list[tuple[int, PrivateSend, Content, Employee]] = []
    for index, send in enumerate(sends):
        try:
            content = content_parse(send.content)
            recipient = recipients.get(send.to_employee_id)
            if recipient is None:
                raise NotFound(_("员工不存在或已离职：%(id)s") % {"id": send.to_employee_id})
            if content.file_key:
                file_reference_check(sender=send.actor, key=content.file_key)
        except MChatError as exc:
            results[index] = exc
            continue
        accepted.append((index, send, content, recipient))
    conversations = (
        private_conversations_get_or_create([(s.actor, r) for _, s, _, r in accepted], found=found)
        if accepted
        else {}
    )
    PRIVATE_CONVERSATION_IDS.remember(conversations, [(s.actor, r) for _, s, _, r in accepted])
    return CheckedSends(results, accepted, conversations)


def private_sends_store(checked: CheckedSends) -> list[Message | MChatError]:
    """Store and deliver (after commit) the accepted sends of private_sends_check; the list
    of messages_send_private. One statement on PostgreSQL, so it needs no transaction of its
    own; elsewhere its statements run in one (the caller's, if it has one)."""
    results = list(checked.results)
    posts = [
        Post(
            checked.conversations[selectors.private_key(s.actor, r)], s.actor, content, s.client_id, s.seq_id
        )
        for _, s, content, r in checked.accepted
    ]
    if posts:
        try:
            messages = messages_post(posts)
        except (DatabaseError, Conversation.DoesNotExist):
            # Nothing was stored. A conversation this process remembered may be gone (the
            # store checks each against its pair): look them up again next time.
            PRIVATE_CONVERSATION_IDS.forget(checked.conversations)
            raise
        for (index, *_rest), message in zip(checked.accepted, messages, strict=True):
            results[index] = message
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class KnownSend:
    """A msg.send_private request by employee ids, before anyone is looked up."""

    employee_id: str
    to_employee_id: str
    content: Any
    client_id: str
    seq_id: str


def private_sends_known(sends: Sequence[KnownSend], *, unanswered: str = "") -> list[Message] | None:
    """messages_send_private for sends between pairs this process has seen, in ONE statement
    that checks what it assumes: each sender and recipient still active, still the employee
    it was (and the recipient still not an AI agent), their conversation still theirs, and no
    message made by the same request yet (a message is its own idempotency record). PostgreSQL only.

    `unanswered`: the caller's own SQL condition that the request (`posts.client_id`,
    `posts.seq_id`) was not answered before, checked in the same statement (the bridge's
    idempotency records, which also hold refusals: bridge.handlers.messages).

    None when it cannot serve them all: a pair not seen, an AI agent as recipient (its
    answer waits, messaging.agent_waits), content that is refused or names a file, or a check that
    fails. Nothing is stored then, and the caller goes the usual way (messages_send_private
    after its lookups), which gives each send its answer, refusals included.
    """
    if connection.vendor != "postgresql" or not sends:
        return None
    posts, conversations = [], {}
    for send in sends:
        known = PRIVATE_CONVERSATION_IDS.known(send.employee_id, send.to_employee_id)
        if known is None or (known.recipient_is_agent and known.recipient_pk != known.sender_pk):
            return None
        try:
            content = content_parse(send.content)
        except MChatError:
            return None
        if content.file_key:
            return None
        conversation = conversations.get(known.conversation_id)
        if conversation is None:
            # Stand-ins with what payloads and answers read: primary key and employee_id.
            sender = Employee(pk=known.sender_pk, employee_id=send.employee_id)
            recipient = Employee(
                pk=known.recipient_pk, employee_id=send.to_employee_id, is_ai_agent=known.recipient_is_agent
            )
            low, high = selectors.private_pair(sender, recipient)
            conversation = conversations[known.conversation_id] = Conversation(
                pk=known.conversation_id, kind=Conversation.Kind.PRIVATE, employee_low=low, employee_high=high
            )
        sender = (
            conversation.employee_low
            if conversation.employee_low_id == known.sender_pk
            else conversation.employee_high
        )
        posts.append(Post(conversation, sender, content, send.client_id, send.seq_id))
    try:
        # In someone's transaction (a test's), a savepoint keeps it usable after a failed check.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return messages_post(posts, checked=True, unanswered=unanswered)
    except (AssumptionFailed, DatabaseError):
        # A check failed (nothing stored, no error in the database's log), or the statement
        # failed: what this process remembered may be stale.
        PRIVATE_CONVERSATION_IDS.forget_known((s.employee_id, s.to_employee_id) for s in sends)
        return None


def _recipients_with_conversations(
    sends: Sequence[PrivateSend], known: Mapping[str, Employee | None]
) -> tuple[dict[str, Employee], dict[tuple[int, int], Conversation]]:
    """The sends' active recipients by employee_id, and the private conversations that exist
    between each sender and recipient by selectors.private_key: from `known` and the
    conversations this process has seen, and one query for the rest."""
    recipients = {employee_id: e for employee_id, e in known.items() if e is not None}
    conversations = {}
    rest = []
    for send in sends:
        if send.to_employee_id not in known:
            rest.append(send)
            continue
        recipient = recipients.get(send.to_employee_id)
        if recipient is None:
            continue  # refused: unknown or no longer active
        key = selectors.private_key(send.actor, recipient)
        pk = PRIVATE_CONVERSATION_IDS.get(key)
        if pk is None:
            rest.append(send)
        else:
            conversations[key] = Conversation(
                pk=pk, kind=Conversation.Kind.PRIVATE, employee_low_id=key[0], employee_high_id=key[1]
            )
    if rest:
        found_recipients, found = _recipients_with_conversations_query(rest)
        recipients.update(found_recipients)
        conversations.update(found)
    return recipients, conversations


def _recipients_with_conversations_query(
    sends: Sequence[PrivateSend],
) -> tuple[dict[str, Employee], dict[tuple[int, int], Conversation]]:
    """_recipients_with_conversations from the database; one query."""
    if not sends:
        return {}, {}
    source, params = rows_source(
        [("to_id", "text"), ("actor", "bigint")], sorted({(s.to_employee_id, s.actor.pk) for s in sends})
    )
    quote = connection.ops.quote_name
    low = "CASE WHEN e.id < v.actor THEN e.id ELSE v.actor END"
    high = "CASE WHEN e.id < v.actor THEN v.actor ELSE e.id END"
    rows = Employee.objects.raw(
        f"SELECT e.*, {low} AS pair_low, {high} AS pair_high, c.id AS pair_conversation, "
        f"c.last_seq AS pair_last_seq FROM {source} "
        f"JOIN {quote(Employee._meta.db_table)} AS e ON e.employee_id = v.to_id AND e.is_active "
        f"LEFT JOIN {quote(Conversation._meta.db_table)} AS c ON c.kind = %s "
        f"AND c.employee_low_id = {low} AND c.employee_high_id = {high}",
        [*params, Conversation.Kind.PRIVATE.value],
    )
    recipients, conversations = {}, {}
    for row in rows:
        recipients[row.employee_id] = row
        if row.pair_conversation is not None:
            conversations[(row.pair_low, row.pair_high)] = Conversation(
                pk=row.pair_conversation,
                kind=Conversation.Kind.PRIVATE,
                employee_low_id=row.pair_low,
                employee_high_id=row.pair_high,
                last_seq=row.pair_last_seq,
            )
    return recipients, conversations
