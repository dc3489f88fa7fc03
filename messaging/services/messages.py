"""Sending, recalling and acknowledging messages (spec 3.11-3.13, DESIGN §5).

Every message takes the next number of its conversation inside the sender's transaction,
under the conversation's row lock (`_messages_post`: one statement on PostgreSQL,
`_conversations_seq_take` on SQLite), so numbers are gap-free and strictly increasing per
conversation across any number of bridge processes. Deliveries go out after commit (messaging.events).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.context import operator_employee
from audit.services import audit_record
from mchat.db import planned_rows, rows_insert, rows_source
from mchat.errors import BadRequest, MChatError, NotFound, PermissionDenied
from mchat.wire import isoformat_z
from messaging import events, ids, selectors
from messaging.agent_waits import agent_acknowledged
from messaging.content import Content, content_parse
from messaging.files import file_reference_check
from messaging.models import Conversation, GroupMember, Message, ReadPosition
from messaging.services.receipts import group_receipts_note
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
        recipient = selectors.employee_get(employee_id=to_employee_id, active=True)
        return _message_of_request(
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
    _PRIVATE_CONVERSATION_IDS.remember(conversations, [(s.actor, r) for _, s, _, r in accepted])
    return CheckedSends(results, accepted, conversations)


def private_sends_store(checked: CheckedSends) -> list[Message | MChatError]:
    """Store and deliver (after commit) the accepted sends of private_sends_check; the list
    of messages_send_private. One statement on PostgreSQL, so it needs no transaction of its
    own; elsewhere its statements run in one (the caller's, if it has one)."""
    results = list(checked.results)
    posts = [
        _Post(
            checked.conversations[selectors.private_key(s.actor, r)], s.actor, content, s.client_id, s.seq_id
        )
        for _, s, content, r in checked.accepted
    ]
    if posts:
        try:
            messages = _messages_post(posts)
        except (DatabaseError, Conversation.DoesNotExist):
            # Nothing was stored. A conversation this process remembered may be gone (the
            # store checks each against its pair): look them up again next time.
            _PRIVATE_CONVERSATION_IDS.forget(checked.conversations)
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
        known = _PRIVATE_CONVERSATION_IDS.known(send.employee_id, send.to_employee_id)
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
        posts.append(_Post(conversation, sender, content, send.client_id, send.seq_id))
    try:
        # In someone's transaction (a test's), a savepoint keeps it usable after a failed check.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return _messages_post(posts, checked=True, unanswered=unanswered)
    except DatabaseError:
        # A check failed (or a repeat clashed): what this process remembered may be stale.
        _PRIVATE_CONVERSATION_IDS.forget_known((s.employee_id, s.to_employee_id) for s in sends)
        return None


def message_send_group(
    *,
    actor: Employee,
    group_id: str,
    content,
    client_id: str = "",
    seq_id: str = "",
) -> Message:
    """A message to a group the actor belongs to: one publish to the group topic."""
    parsed = content_parse(content)
    access = selectors.group_access(actor=actor, group_id=group_id)
    if parsed.file_key:
        file_reference_check(sender=actor, key=parsed.file_key)
    conversation = selectors.group_conversation(group=access.group)
    return _message_post(conversation, sender=actor, content=parsed, client_id=client_id, seq_id=seq_id)


def message_recall(*, actor: Employee | None, msg_id: str) -> Message:
    """The sender within MCHAT_RECALL_WINDOW_SECONDS; a group's owner and admins at any time.

    The content is kept for the record but no longer served; participants get a recall event.
    Recalling a recalled message again answers the same and sends nothing.
    """
    with transaction.atomic():
        # Locked: of two concurrent recalls, the second sees the first and sends nothing.
        message = Message.objects.select_for_update().get(pk=_visible_message(actor, msg_id).pk)
        conversation = _conversation_loaded(message.conversation_id)
        message.conversation = conversation
        if message.is_recalled:
            return message
        if conversation.is_group and conversation.group.is_dismissed:
            raise NotFound(_("群组不存在或已解散：%(id)s") % {"id": conversation.group.group_id})
        if actor is not None:
            _check_may_recall(actor, message, conversation)
        message.recalled_at = timezone.now()
        # From the console: the user's employee when there is one (else the deliveries say
        # "system", docs/protocol.md §11.3).
        message.recalled_by = actor if actor is not None else operator_employee()
        message.save(update_fields=["recalled_at", "recalled_by"])
        if message.recalled_by_id != message.sender_id:  # an admin's recall; one's own is not audited
            audit_record(
                action="message_recall",
                actor=actor,
                target=message,
                changes={"recalled_at": {"before": None, "after": message.recalled_at}},
            )
        events.message_recalled(message, conversation)
    return message


@dataclass(frozen=True)
class ReadAck:
    message: Message
    conversation: Conversation
    last_read_seq: int
    read_at: datetime
    advanced: bool


def read_ack(
    *,
    actor: Employee,
    msg_id: str,
    conversation_type: str | None = None,
    peer_employee_id: str | None = None,
    group_id: str | None = None,
) -> ReadAck:
    """The actor has read its conversation up to `msg_id` (spec 3.13).

    Moves the actor's read position forward (never back). Private: the peer gets a receipt
    for each ack that moved it. Group: senders of the newly read messages get coalesced
    counts (services.receipts). The actor's other devices learn the new position.
    """
    read_at = timezone.now()
    with transaction.atomic():
        message = _visible_message(actor, msg_id)
        conversation = message.conversation
        _check_reference(message, conversation, actor, conversation_type, peer_employee_id, group_id)
        previous = read_position_move(conversation=conversation, employee=actor, seq=message.seq, at=read_at)
        advanced = previous < message.seq
        if advanced:
            _announce_read(actor, message, conversation, previous=previous, read_at=read_at)
        # An AI agent's acknowledgement answers the sends waiting for it (messaging.agent_waits).
        agent_acknowledged(agent=actor, conversation_id=conversation.pk, up_to_seq=max(previous, message.seq))
    return ReadAck(message, conversation, max(previous, message.seq), read_at, advanced)


def read_position_move(
    *, conversation: Conversation, employee: Employee, seq: int, at: datetime | None = None
) -> int:
    """Move the employee's read position up to `seq` if it is behind; return where it was.

    Locks the position row for the rest of the transaction, so concurrent acks of one reader
    move it in order. Callers that wait for an acknowledgement (AI agents) can compare the
    returned value with a message's seq.
    """
    at = at or timezone.now()
    position = (
        ReadPosition.objects.select_for_update().filter(conversation=conversation, employee=employee).first()
    )
    if position is None:
        position, _created = ReadPosition.objects.get_or_create(conversation=conversation, employee=employee)
    previous = position.last_read_seq
    if previous < seq:
        position.last_read_seq = seq
        position.updated_at = at
        position.save(update_fields=["last_read_seq", "updated_at"])
    return previous


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
    pairs: Sequence[tuple[Employee, Employee]], *, found: dict[tuple[int, int], Conversation]
) -> dict[tuple[int, int], Conversation]:
    """The private conversation of each pair, by selectors.private_key: those in `found`
    (looked up already), private_conversation_get_or_create for each other pair."""
    wanted = {selectors.private_key(a, b): selectors.private_pair(a, b) for a, b in pairs}
    conversations = {}
    # In key order, so two processes creating the same new pairs take them in the same order.
    for key, (low, high) in sorted(wanted.items()):
        conversation = found.get(key) or private_conversation_get_or_create(a=low, b=high)
        conversation.employee_low, conversation.employee_high = low, high
        conversations[key] = conversation
    return conversations


@dataclass(frozen=True, slots=True)
class KnownPair:
    """What this process has seen of a sender and a recipient (by employee_id)."""

    conversation_id: int
    sender_pk: int
    recipient_pk: int
    recipient_is_agent: bool


class _PrivateConversationIds:
    """This process's private conversation ids by pair (selectors.private_key), and what it
    has seen of each pair by employee ids (KnownPair, for private_sends_known).

    A pair's conversation, once created, is never replaced, so a send to a pair seen before
    needs no lookup. Should one be deleted after all (its employees deleted in the admin), the
    store statement, which checks every conversation against its pair, fails as a whole and
    the batch's pairs are forgotten (private_sends_store, private_sends_known). Bounded (about
    30 MB when full): when full, it starts over.
    """

    MAX_PAIRS = 50_000

    def __init__(self) -> None:
        self._ids: dict[tuple[int, int], int] = {}
        self._known: dict[tuple[str, str], KnownPair] = {}

    def get(self, key: tuple[int, int]) -> int | None:
        return self._ids.get(key)

    def known(self, sender_id: str, recipient_id: str) -> KnownPair | None:
        return self._known.get((sender_id, recipient_id))

    def remember(
        self,
        conversations: Mapping[tuple[int, int], Conversation],
        pairs: Iterable[tuple[Employee, Employee]] = (),
    ) -> None:
        if len(self._ids) + len(conversations) > self.MAX_PAIRS or len(self._known) > 2 * self.MAX_PAIRS:
            self.clear()
        for key, conversation in conversations.items():
            self._ids[key] = conversation.pk
        for sender, recipient in pairs:  # and the other way round: the same conversation
            conversation_id = self._ids[selectors.private_key(sender, recipient)]
            for a, b in ((sender, recipient), (recipient, sender)):
                self._known[(a.employee_id, b.employee_id)] = KnownPair(
                    conversation_id, a.pk, b.pk, b.is_ai_agent
                )

    def forget(self, keys: Iterable[tuple[int, int]]) -> None:
        keys = set(keys)
        for key in keys:
            self._ids.pop(key, None)
        for by_ids, pair in list(self._known.items()):
            if selectors.private_key_of(pair.sender_pk, pair.recipient_pk) in keys:
                del self._known[by_ids]

    def forget_known(self, ids: Iterable[tuple[str, str]]) -> None:
        for key in ids:
            self._known.pop(key, None)

    def clear(self) -> None:
        self._ids.clear()
        self._known.clear()


_PRIVATE_CONVERSATION_IDS = _PrivateConversationIds()


def private_conversation_ids_clear() -> None:
    """Forget the private conversations this process has seen (tests: a rolled-back test's
    pairs must not be taken for existing in the next one)."""
    _PRIVATE_CONVERSATION_IDS.clear()


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
        pk = _PRIVATE_CONVERSATION_IDS.get(key)
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


def _conversations_seq_take(
    counts: dict[tuple[int, int | None, int | None], int], *, at: datetime
) -> dict[int, int]:
    """Take `n` consecutive message numbers from each conversation of `counts`, (pk, low,
    high) -> n, in the current transaction; returns each conversation's new last_seq by pk
    (its numbers end there). A conversation that is gone, or is not the pair's, raises
    Conversation.DoesNotExist (the caller's transaction then stores nothing).

    The SQLite half of _messages_store (PostgreSQL takes the numbers inside its one write
    statement, locking rows in id order). SQLite has one writer at a time, and a rollback
    gives the numbers back, so there are never gaps.
    """
    if not counts:
        return {}
    table = connection.ops.quote_name(Conversation._meta.db_table)
    source, source_params = rows_source(
        [("id", "bigint"), ("low", "bigint"), ("high", "bigint"), ("n", "bigint")],
        [(*key, n) for key, n in sorted(counts.items(), key=lambda item: item[0][0])],
    )
    sql = (
        f"UPDATE {table} SET last_seq = last_seq + v.n, "
        f"last_activity_at = MAX(last_activity_at, %s) "
        f"FROM {source} WHERE {table}.id = v.id "
        f"AND {table}.employee_low_id IS v.low AND {table}.employee_high_id IS v.high "
        f"RETURNING {table}.id, {table}.last_seq"
    )
    params = [connection.ops.adapt_datetimefield_value(at), *source_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        taken = dict(cursor.fetchall())
    if len(taken) != len(counts):
        missing = sorted({pk for pk, _low, _high in counts} - set(taken))
        raise Conversation.DoesNotExist(f"conversations vanished or not the pair's: {missing}")
    return taken


# --- internals ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Post:
    conversation: Conversation
    sender: Employee
    content: Content
    client_id: str
    seq_id: str


def _message_post(
    conversation: Conversation, *, sender: Employee, content: Content, client_id: str, seq_id: str
) -> Message:
    """Append and deliver, once per request: a repeated (client_id, seq_id) gets the message
    its first copy created, and nothing is delivered again."""
    try:
        with transaction.atomic():
            (message,) = _messages_post([_Post(conversation, sender, content, client_id, seq_id)])
    except IntegrityError:
        # The unique (client_id, seq_id) insert clashed: only then is the earlier copy looked
        # up, so the common path pays no query for it.
        if not seq_id:
            raise
        return _message_of_request(conversation, client_id=client_id, seq_id=seq_id)
    return message


MESSAGE_FIELDS = (
    "conversation",
    "seq",
    "msg_id",
    "sender",
    "content",
    "content_type",
    "sent_at",
    "client_id",
    "seq_id",
    "file_key",
)


def _messages_post(posts: Sequence[_Post], *, checked: bool = False, unanswered: str = "") -> list[Message]:
    """Number, store and deliver (after commit) the messages of `posts`, in order: take the
    numbers, insert the messages, move each sender's read position past its own messages
    (whoever writes has read everything before). A fixed number of statements whatever the
    number of posts: one on PostgreSQL, three elsewhere.

    `checked` (PostgreSQL, private posts): the statement also checks what private_sends_known
    assumed of each post, and fails whole if anything is not so.
    """
    messages = [
        Message(
            conversation=post.conversation,
            msg_id=ids.message_id(),
            sender=post.sender,
            content=post.content.value,
            content_type=post.content.type,
            client_id=post.client_id,
            seq_id=post.seq_id,
            file_key=post.content.file_key or "",
        )
        for post in posts
    ]
    if connection.vendor == "postgresql":
        # One statement: atomic by itself.
        _messages_store_in_one_statement(messages, checked=checked, unanswered=unanswered)
    else:
        assert not checked, "checked posts are PostgreSQL's (private_sends_known)"
        with transaction.atomic():  # a savepoint inside the caller's transaction
            _messages_store(messages)
    for message in messages:
        message.conversation.last_seq = max(message.conversation.last_seq, message.seq)
        events.message_sent(message, message.conversation)
    return messages


def _messages_store(messages: list[Message]) -> None:
    counts = Counter(
        (m.conversation_id, m.conversation.employee_low_id, m.conversation.employee_high_id) for m in messages
    )
    last = _conversations_seq_take(counts, at=timezone.now())
    # Taken under the conversations' row locks: sent_at never goes back as seq goes up.
    sent_at = timezone.now()
    next_seq = {pk: last[pk] - n + 1 for (pk, _low, _high), n in counts.items()}
    for message in messages:
        message.seq, message.sent_at = next_seq[message.conversation_id], sent_at
        next_seq[message.conversation_id] += 1
    rows_insert(messages, fields=MESSAGE_FIELDS, returning_pk_by="msg_id")
    read_up_to = {(m.conversation_id, m.sender_id): m.seq for m in messages}  # the last one wins
    _read_positions_advance(read_up_to, at=sent_at)


# _messages_store as one PostgreSQL statement (one round trip instead of three). The
# conversations' rows are locked in id order (concurrent batches cannot deadlock); a message's
# sent_at is the later of now and its conversation's last activity, read under the lock, so
# sent_at never goes back as seq goes up; and all of it commits or rolls back with the
# transaction, so numbers stay gap-free. Each conversation is checked against the pair the
# caller gave (low, high; none for a group): a message whose conversation is not there gets no
# number, and the NOT NULL of messages.seq then fails the whole statement, storing nothing.
# Checked posts (private_sends_known) get no number either unless their sender and recipient
# are the active employees the caller took them for and no message of the same request exists yet.
_STORE_IN_ONE_STATEMENT = """
WITH posts AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb) AS v(
        ord int, conversation_id bigint, low bigint, high bigint, sender_id bigint, msg_id text,
        content jsonb, content_type text, client_id text, seq_id text, file_key text,
        sender_eid text, recipient_id bigint, recipient_eid text, recipient_agent boolean)
    LIMIT {rows}
){checks}, counts AS (
    SELECT conversation_id, low, high, count(*) AS n FROM posts GROUP BY conversation_id, low, high
), locked AS (
    SELECT id FROM {conversation} WHERE id IN (SELECT conversation_id FROM counts) ORDER BY id FOR UPDATE
), taken AS (
    UPDATE {conversation} AS c SET last_seq = c.last_seq + counts.n,
        last_activity_at = GREATEST(c.last_activity_at, %s::timestamptz)
    FROM counts WHERE c.id = counts.conversation_id AND c.id IN (SELECT id FROM locked)
        AND c.employee_low_id IS NOT DISTINCT FROM counts.low
        AND c.employee_high_id IS NOT DISTINCT FROM counts.high
    RETURNING c.id, c.employee_low_id AS low, c.employee_high_id AS high,
        c.last_seq - counts.n AS before, c.last_activity_at AS sent_at
), numbered AS (
    SELECT posts.*, taken.sent_at,
        taken.before + row_number() OVER (PARTITION BY posts.conversation_id ORDER BY posts.ord) AS seq
    FROM posts LEFT JOIN taken ON taken.id = posts.conversation_id
        AND taken.low IS NOT DISTINCT FROM posts.low AND taken.high IS NOT DISTINCT FROM posts.high
        {checked}
), inserted AS (
    INSERT INTO {message} (conversation_id, seq, msg_id, sender_id, content, content_type, sent_at,
        client_id, seq_id, file_key)
    SELECT conversation_id, seq, msg_id, sender_id, content, content_type, sent_at, client_id, seq_id, file_key
    FROM numbered
    RETURNING id, msg_id, seq, sent_at
), read AS (
    UPDATE {read_position} AS r SET last_read_seq = mine.seq, updated_at = mine.sent_at
    FROM (SELECT conversation_id, sender_id, max(seq) AS seq, max(sent_at) AS sent_at
          FROM numbered GROUP BY conversation_id, sender_id) AS mine
    WHERE r.conversation_id = mine.conversation_id AND r.employee_id = mine.sender_id
        AND r.last_read_seq < mine.seq
)
SELECT id, msg_id, seq, sent_at FROM inserted
"""


_STORE_CHECKS = """, verified AS (
    SELECT posts.ord FROM posts
    JOIN {employee} AS s ON s.id = posts.sender_id AND s.employee_id = posts.sender_eid AND s.is_active
    JOIN {employee} AS r ON r.id = posts.recipient_id AND r.employee_id = posts.recipient_eid
        AND r.is_active AND r.is_ai_agent = posts.recipient_agent
    WHERE NOT EXISTS (SELECT 1 FROM {message} AS m
        WHERE m.client_id = posts.client_id AND m.seq_id = posts.seq_id AND m.seq_id <> '')
    {unanswered}
)"""


def _messages_store_in_one_statement(
    messages: list[Message], *, checked: bool = False, unanswered: str = ""
) -> None:
    quote = connection.ops.quote_name
    sql = _STORE_IN_ONE_STATEMENT.format(
        conversation=quote(Conversation._meta.db_table),
        message=quote(Message._meta.db_table),
        read_position=quote(ReadPosition._meta.db_table),
        rows=planned_rows(len(messages)),  # the planner's row count (mchat.db.rows_source)
        checks=_STORE_CHECKS.format(
            employee=quote(Employee._meta.db_table),
            message=quote(Message._meta.db_table),
            unanswered=f"AND {unanswered}" if unanswered else "",
        )
        if checked
        else "",
        checked="AND posts.ord IN (SELECT ord FROM verified)" if checked else "",
    )
    document = [
        {
            "ord": ord_,
            "conversation_id": m.conversation_id,
            "low": m.conversation.employee_low_id,
            "high": m.conversation.employee_high_id,
            "sender_id": m.sender_id,
            "msg_id": m.msg_id,
            "content": m.content,
            "content_type": m.content_type,
            "client_id": m.client_id,
            "seq_id": m.seq_id,
            "file_key": m.file_key,
            **(_checks_of(m) if checked else {}),
        }
        for ord_, m in enumerate(messages)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(document), timezone.now()])
        stored = {msg_id: (pk, seq, sent_at) for pk, msg_id, seq, sent_at in cursor.fetchall()}
    for message in messages:
        message.pk, message.seq, message.sent_at = stored[message.msg_id]
        message._state.adding = False


def _checks_of(message: Message) -> dict:
    recipient = message.conversation.peer_of(message.sender)
    return {
        "sender_eid": message.sender.employee_id,
        "recipient_id": recipient.pk,
        "recipient_eid": recipient.employee_id,
        "recipient_agent": recipient.is_ai_agent,
    }


def _read_positions_advance(up_to: dict[tuple[int, int], int], *, at: datetime) -> None:
    """Move read positions (conversation pk, employee pk) forward to the given seq; one UPDATE."""
    table = connection.ops.quote_name(ReadPosition._meta.db_table)
    source, params = rows_source(
        [("conversation", "bigint"), ("employee", "bigint"), ("seq", "bigint")],
        [(conversation, employee, seq) for (conversation, employee), seq in up_to.items()],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_read_seq = v.seq, updated_at = %s FROM {source} "
            f"WHERE {table}.conversation_id = v.conversation AND {table}.employee_id = v.employee "
            f"AND {table}.last_read_seq < v.seq",
            [connection.ops.adapt_datetimefield_value(at), *params],
        )


def _message_of_request(conversation: Conversation | None, *, client_id: str, seq_id: str) -> Message:
    """The message an earlier delivery of this request created (its insert just clashed)."""
    earlier = Message.objects.filter(client_id=client_id, seq_id=seq_id).select_related("sender").get()
    if conversation is None or earlier.conversation_id != conversation.pk:
        raise BadRequest(_("seq_id 已被本设备的另一条消息使用"))
    return earlier


def _visible_message(actor: Employee | None, msg_id: str) -> Message:
    if actor is None:
        message = Message.objects.filter(msg_id=msg_id).select_related("sender").first()
        if message is None:
            raise NotFound(_("消息不存在：%(id)s") % {"id": msg_id})
        return message
    return selectors.message_for_participant(actor=actor, msg_id=msg_id)


def _conversation_loaded(pk: int) -> Conversation:
    return Conversation.objects.select_related("group", "employee_low", "employee_high").get(pk=pk)


def _check_may_recall(actor: Employee, message: Message, conversation: Conversation) -> None:
    if conversation.is_group:
        role = (
            GroupMember.objects.filter(group_id=conversation.group_id, employee=actor)
            .values_list("role", flat=True)
            .first()
        )
        if role in (GroupMember.Role.OWNER, GroupMember.Role.ADMIN):
            return
    if message.sender_id != actor.pk:
        raise PermissionDenied()
    window = settings.MCHAT_RECALL_WINDOW_SECONDS
    if timezone.now() - message.sent_at > timedelta(seconds=window):
        raise PermissionDenied(_("已超过可撤回时间（%(seconds)d 秒）") % {"seconds": window})


def _check_reference(message, conversation, actor, conversation_type, peer_employee_id, group_id) -> None:
    """The optional conversation fields of a read_ack must name the message's conversation."""
    if conversation_type is not None and conversation_type != conversation.kind:
        raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})
    if conversation.is_group:
        if group_id is not None and group_id != conversation.group.group_id:
            raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})
    elif peer_employee_id is not None and peer_employee_id != conversation.peer_of(actor).employee_id:
        raise NotFound(_("消息不存在：%(id)s") % {"id": message.msg_id})


def _announce_read(actor, message, conversation, *, previous: int, read_at: datetime) -> None:
    when = isoformat_z(read_at)
    if conversation.is_group:
        where = {"conversation_type": "group", "group_id": conversation.group.group_id}
        group_receipts_note(
            conversation=conversation, reader=actor, after_seq=previous, up_to_seq=message.seq
        )
    else:
        peer = conversation.peer_of(actor)
        where = {"conversation_type": "private", "peer_employee_id": peer.employee_id}
        if peer.pk != actor.pk:
            events.read_receipt(
                to_employee_id=peer.employee_id,
                receipt={
                    "type": "read_receipt",
                    "conversation_type": "private",
                    "reader_id": actor.employee_id,
                    "msg_id": message.msg_id,
                    "seq": message.seq,
                    "read_at": when,
                },
            )
    events.read_receipt(
        to_employee_id=actor.employee_id,
        receipt={"type": "read_position", **where, "last_read_seq": message.seq, "read_at": when},
    )
