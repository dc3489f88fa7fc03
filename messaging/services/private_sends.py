"""msg.send_private (spec 3.11): one front door, `message_send_private(*, sends, ...)`, for one
send or many, and the two ways it serves them, side by side below it:

- `_sends_between_known_pairs`: senders named by employee_id only, before anyone is looked up
  (what the bridge's dispatcher tries first), between pairs this process has seen: ONE
  PostgreSQL statement stores them all and checks everything this process remembered. All or
  nothing: None when it cannot serve them all (nothing stored); the caller then looks the
  senders up and comes again.
- `_sends_looked_up`: the usual way, senders looked up: each send's refusal, or its recipient
  and conversation (`_sends_checked`), then the store (`_sends_stored`,
  messaging.services.store: one statement on PostgreSQL, three on SQLite), in a transaction
  that also opens the agents' waits when an answer waits for an AI agent
  (messaging.agent_waits.sends_atomic).

A request (client_id, seq_id) that made a message before gets that message again: nothing is
stored or delivered twice, and no constraint is broken to find out (the store leaves repeats
out and says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils.translation import gettext as _

from mchat.db import rows_source
from mchat.errors import BadRequest, MChatError, NotFound
from messaging import payloads, selectors
from messaging.agent_waits import agent_ack_wait_open, answer_waits, sends_atomic
from messaging.content import content_parse
from messaging.files import file_reference_check
from messaging.models import Conversation, Message
from messaging.participants import Participant
from messaging.services.conversations import private_conversations_get_or_create
from messaging.services.pair_cache import PRIVATE_CONVERSATION_IDS
from messaging.services.store import (
    AssumptionFailed,
    Post,
    StoredMessage,
    messages_of_requests,
    messages_post,
)
from org.models import Employee


@dataclass(frozen=True, slots=True)
class PrivateSend:
    """One msg.send_private: who sends (the Employee; or only its employee_id, before anyone
    is looked up), to whom, the content as the request carried it (content_parse decides),
    and the request (client_id, seq_id) that carries it: a repeat gets the same message."""

    sender: Employee | str
    to_employee_id: str
    content: Any
    client_id: str = ""
    seq_id: str = ""


@dataclass(frozen=True, slots=True)
class PrivateSent:
    """A send's message (for a repeated request, the one its first copy made), its recipient,
    and whether the answer waits for the recipient, an AI agent, to acknowledge it
    (messaging.agent_waits: answered then, or 504 at its deadline)."""

    message: Message | StoredMessage  # StoredMessage from the known-pairs strategy
    recipient: Participant
    waits: bool = False

    @property
    def data(self) -> dict:
        """Spec 3.11's answer data."""
        return payloads.private_sent_data(self.message, to_employee_id=self.recipient.employee_id)


def message_send_private(
    *,
    sends: Sequence[PrivateSend],
    recipients: Mapping[str, Employee | None] | None = None,
    unanswered: str = "",
) -> list[PrivateSent | MChatError] | None:
    """A private message for each send to an active employee (oneself included: a note to
    self), delivered after commit to the recipient's inbox and to the sender's (its other
    devices).

    Each send gets its PrivateSent, or the refusal it would get alone (MChatError: invalid
    content, an unknown or former recipient, a file it may not use, a seq_id this device used
    in another conversation, an agent's wait that expired); refusals write nothing. Sends to
    one conversation take consecutive numbers in the order given; the statements are a fixed
    number whatever the number of sends.

    `recipients`: recipients found already, by employee_id (None: unknown or no longer
    active), as the bridge's dispatcher hands them over; the rest are looked up.

    Senders named by employee_id only: the known-pairs strategy, all or nothing, None when it
    cannot serve them all. `unanswered` is then the caller's own SQL condition that the
    request (`posts.client_id`, `posts.seq_id`) was not answered before, checked in the same
    statement (the bridge's idempotency records, which also hold refusals).
    """
    by_id = [isinstance(send.sender, str) for send in sends]
    if any(by_id):
        if not all(by_id):
            raise ValueError("senders are all looked up or all named by employee_id")
        return _sends_between_known_pairs(sends, unanswered=unanswered)
    return _sends_looked_up(sends, recipients or {})


# --- between pairs this process has seen: one checked statement (PostgreSQL) -------------------


def _sends_between_known_pairs(sends: Sequence[PrivateSend], *, unanswered: str) -> list[PrivateSent] | None:
    """ONE statement that stores the sends and checks what this process assumes of each: sender
    and recipient still active, still the employees it remembers (the recipient still not an
    AI agent), their conversation still theirs, no message made by the same request yet (a
    message is its own idempotency record), and `unanswered`.

    None when it cannot serve them all: a pair not seen, an AI agent as recipient (its answer
    waits), content that is refused or names a file, the same request twice, or a check that
    fails (then what this process remembered of these pairs is forgotten). Nothing is stored
    then, and the caller goes the usual way, which gives each send its answer.
    """
    if connection.vendor != "postgresql" or not sends:
        return None
    requests = [(send.client_id, send.seq_id) for send in sends if send.seq_id]
    if len(set(requests)) < len(requests):
        return None
    posts = []
    for send in sends:
        known = PRIVATE_CONVERSATION_IDS.known(send.sender, send.to_employee_id)
        if known is None or answer_waits(sender=known.sender, recipient=known.recipient):
            return None
        try:
            content = content_parse(send.content)
        except MChatError:
            return None
        if content.file_key:
            return None
        posts.append(
            Post(known.conversation_id, known.sender, content, send.client_id, send.seq_id, known.recipient)
        )
    try:
        # In someone's transaction (a test's), a savepoint keeps it usable after a failed check.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            messages = messages_post(posts, checked=True, unanswered=unanswered)
    except (AssumptionFailed, DatabaseError):
        # A check failed (nothing stored, no error in the database's log), or the statement
        # failed: what this process remembered may be stale.
        PRIVATE_CONVERSATION_IDS.forget_known((send.sender, send.to_employee_id) for send in sends)
        return None
    return [PrivateSent(message, post.recipient) for message, post in zip(messages, posts, strict=True)]


# --- the usual way: senders looked up ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Accepted:
    index: int  # in the sends
    post: Post


def _sends_looked_up(
    sends: Sequence[PrivateSend], recipients: Mapping[str, Employee | None]
) -> list[PrivateSent | MChatError]:
    for last_try in (False, True):
        results: list[PrivateSent | MChatError | None] = [None] * len(sends)
        accepted, same_as = _sends_checked(sends, recipients, results)
        try:
            with sends_atomic((a.post.sender, a.post.recipient) for a in accepted):
                _sends_stored(accepted, results)
            break
        except Conversation.DoesNotExist:
            # A conversation this process remembered is gone, or not the pair's (nothing was
            # stored, and _sends_stored forgot these pairs): once more, looked up.
            if last_try:
                raise
    for index, first in same_as.items():
        results[index] = results[first]
    return results  # type: ignore[return-value]


def _sends_checked(
    sends: Sequence[PrivateSend],
    recipients: Mapping[str, Employee | None],
    results: list[PrivateSent | MChatError | None],
) -> tuple[list[_Accepted], dict[int, int]]:
    """Each send's refusal (into `results`), or its post: the recipient, and the pair's
    conversation (a missing one is created, committed on its own: a conversation without
    messages is harmless). Recipients in `recipients` and pairs this process has seen cost no
    query; the rest one in all, plus one transaction per new conversation.

    Also {index: index of the first send of the same request} for a request given twice."""
    found, conversation_ids = _recipients_with_conversations(sends, recipients)
    checked = []
    first_of: dict[tuple[str, str], int] = {}
    same_as: dict[int, int] = {}
    for index, send in enumerate(sends):
        if send.seq_id:
            key = (send.client_id, send.seq_id)
            if key in first_of:
                same_as[index] = first_of[key]
                continue
            first_of[key] = index
        try:
            content = content_parse(send.content)
            recipient = found.get(send.to_employee_id)
            if recipient is None:
                raise NotFound(_("员工不存在或已离职：%(id)s") % {"id": send.to_employee_id})
            if content.file_key:
                file_reference_check(sender=send.sender, key=content.file_key)
        except MChatError as exc:
            results[index] = exc
            continue
        checked.append((index, send, content, recipient))
    if not checked:
        return [], same_as
    conversation_ids = private_conversations_get_or_create(
        [(send.sender, recipient) for _index, send, _content, recipient in checked], found=conversation_ids
    )
    accepted = [
        _Accepted(
            index,
            Post(
                conversation_ids[selectors.private_key(send.sender, recipient)],
                Participant.of(send.sender),
                content,
                send.client_id,
                send.seq_id,
                Participant.of(recipient),
            ),
        )
        for index, send, content, recipient in checked
    ]
    PRIVATE_CONVERSATION_IDS.remember(
        (a.post.conversation_id, a.post.sender, a.post.recipient) for a in accepted
    )
    return accepted, same_as


def _sends_stored(accepted: list[_Accepted], results: list[PrivateSent | MChatError | None]) -> None:
    """Store and deliver (after commit) the accepted sends, their outcomes into `results`. A
    repeated request gets the message it made before (in another conversation: refused); to
    an AI agent, the answer waits (agent_ack_wait_open, in the caller's sends_atomic)."""
    posts = [a.post for a in accepted]
    if not posts:
        return
    try:
        messages = messages_post(posts)
    except (DatabaseError, Conversation.DoesNotExist):
        # Nothing was stored. A conversation this process remembered may be gone (the store
        # checks each against its pair): look them up again next time.
        PRIVATE_CONVERSATION_IDS.forget({post.pair for post in posts})
        raise
    earlier = messages_of_requests(
        (post.client_id, post.seq_id)
        for post, message in zip(posts, messages, strict=True)
        if message is None
    )
    for a, message in zip(accepted, messages, strict=True):
        post = a.post
        if message is None:
            message = earlier.get((post.client_id, post.seq_id))
            if message is None:
                raise RuntimeError("the message of a repeated request vanished")
            if message.conversation_id != post.conversation_id:
                results[a.index] = BadRequest(_("seq_id 已被本设备的另一条消息使用"))
                continue
        sent = PrivateSent(message, post.recipient)
        if answer_waits(sender=post.sender, recipient=post.recipient):
            try:
                waits = agent_ack_wait_open(
                    client_id=post.client_id,
                    seq_id=post.seq_id,
                    message=message,
                    sender=post.sender,
                    recipient=post.recipient,
                    data=sent.data,
                )
            except MChatError as exc:
                results[a.index] = exc
                continue
            sent = PrivateSent(message, post.recipient, waits)
        results[a.index] = sent


def _recipients_with_conversations(
    sends: Sequence[PrivateSend], known: Mapping[str, Employee | None]
) -> tuple[dict[str, Employee], dict[tuple[int, int], int]]:
    """The sends' active recipients by employee_id, and the ids of the private conversations
    that exist between each sender and recipient by selectors.private_key: from `known` and
    the conversations this process has seen, and one query for the rest."""
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
        key = selectors.private_key(send.sender, recipient)
        pk = PRIVATE_CONVERSATION_IDS.get(key)
        if pk is None:
            rest.append(send)
        else:
            conversations[key] = pk
    if rest:
        found_recipients, found = _recipients_with_conversations_query(rest)
        recipients.update(found_recipients)
        conversations.update(found)
    return recipients, conversations


def _recipients_with_conversations_query(
    sends: Sequence[PrivateSend],
) -> tuple[dict[str, Employee], dict[tuple[int, int], int]]:
    """_recipients_with_conversations from the database; one query."""
    source, params = rows_source(
        [("to_id", "text"), ("actor", "bigint")], sorted({(s.to_employee_id, s.sender.pk) for s in sends})
    )
    quote = connection.ops.quote_name
    low = "CASE WHEN e.id < v.actor THEN e.id ELSE v.actor END"
    high = "CASE WHEN e.id < v.actor THEN v.actor ELSE e.id END"
    rows = Employee.objects.raw(
        f"SELECT e.*, {low} AS pair_low, {high} AS pair_high, c.id AS pair_conversation "
        f"FROM {source} "
        f"JOIN {quote(Employee._meta.db_table)} AS e ON e.employee_id = v.to_id AND e.is_active "
        f"LEFT JOIN {quote(Conversation._meta.db_table)} AS c ON c.kind = %s "
        f"AND c.employee_low_id = {low} AND c.employee_high_id = {high}",
        [*params, Conversation.Kind.PRIVATE.value],
    )
    recipients, conversations = {}, {}
    for row in rows:
        recipients[row.employee_id] = row
        if row.pair_conversation is not None:
            conversations[(row.pair_low, row.pair_high)] = row.pair_conversation
    return recipients, conversations
