"""The message store: number, insert and deliver messages, on PostgreSQL and on SQLite side
by side (`store_postgresql`, `store_sqlite`), both behind `messages_post`.

Every message takes the next number of its conversation inside the sender's transaction,
under the conversation's row lock (one statement on PostgreSQL; `_conversations_seq_take`
then an insert on SQLite), so numbers are gap-free and strictly increasing per conversation
across any number of bridge processes; a message's sent_at is its conversation's last activity.
A post whose request (client_id, seq_id) made a message before is left out by the statements
themselves (NOT EXISTS), so a repeat breaks no constraint and takes no number. Deliveries go
out after commit (messaging.events).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mchat.db import planned_rows, rows_insert, rows_source
from messaging import events, ids
from messaging.content import Content
from messaging.models import Conversation, Group, GroupMember, Message, ReadPosition
from messaging.participants import Participant
from org.models import Employee


class AssumptionFailed(Exception):
    """A checked store (the known-pairs strategy of messaging.services.private_sends, the
    known-groups strategy of messaging.services.messages) found that something its caller
    assumed no longer holds: nothing was stored."""


@dataclass(frozen=True, slots=True)
class Post:
    """One message to store: its conversation, sender, content and the request that carries it.

    A post to a private conversation names the other participant (`recipient`: the sender
    again in a note to self), and the store checks the conversation against that pair; a post
    to a group names its `group_id`, where the delivery goes.
    """

    conversation_id: int
    sender: Participant
    content: Content
    client_id: str = ""
    seq_id: str = ""
    recipient: Participant | None = None
    group_id: str = ""

    @property
    def pair(self) -> tuple[int | None, int | None]:
        """The conversation's (employee_low_id, employee_high_id); (None, None) for a group."""
        if self.recipient is None:
            return (None, None)
        a, b = self.sender.pk, self.recipient.pk
        return (a, b) if a <= b else (b, a)


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

# A message made by the same request (client_id, seq_id) already: the post is left out.
_REQUEST_SEEN = (
    "EXISTS (SELECT 1 FROM {message} AS m WHERE m.client_id = {alias}.client_id "
    "AND m.seq_id = {alias}.seq_id AND m.seq_id <> '')"
)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message the checked store (the known-pairs and known-groups strategies) wrote, with
    what its answer and its deliveries read (messaging.payloads): building a Django Message
    for each cost more than the rest of that path's Python work."""

    pk: int
    msg_id: str
    conversation_id: int
    sender_id: int
    content: object
    content_type: str
    seq: int
    sent_at: datetime
    client_id: str
    seq_id: str
    file_key: str

    @classmethod
    def of(cls, post: Post, msg_id: str, pk: int, seq: int, sent_at: datetime) -> StoredMessage:
        return cls(
            pk,
            msg_id,
            post.conversation_id,
            post.sender.pk,
            post.content.value,
            post.content.type,
            seq,
            sent_at,
            post.client_id,
            post.seq_id,
            post.content.file_key or "",
        )


def _message(post: Post, msg_id: str) -> Message:
    return Message(
        conversation_id=post.conversation_id,
        msg_id=msg_id,
        sender_id=post.sender.pk,
        content=post.content.value,
        content_type=post.content.type,
        client_id=post.client_id,
        seq_id=post.seq_id,
        file_key=post.content.file_key or "",
    )


def messages_post(
    posts: Sequence[Post], *, checked: bool = False, unanswered: str = ""
) -> list[Message | StoredMessage | None]:
    """Number, store and deliver (after commit) the messages of `posts`, in order: take the
    numbers, insert the messages, move each sender's read position past its own messages
    (whoever writes has read everything before). A fixed number of statements whatever the
    number of posts: one on PostgreSQL, three elsewhere.

    Each post's Message (checked: its StoredMessage); None for a post whose request
    (client_id, seq_id) made a message before: it is left out of the statements (no
    constraint is broken, no number taken), and nothing is delivered for it; the caller
    answers with the earlier message (messages_of_requests).

    `checked` (PostgreSQL; posts all private or all to groups): the statement also checks
    what the known-pairs (or known-groups) strategy assumed of each post, and stores nothing
    (AssumptionFailed) if anything is not so.
    """
    msg_ids = [ids.message_id() for _post in posts]
    messages: list[Message | StoredMessage | None]
    if connection.vendor == "postgresql":
        # One statement: atomic by itself.
        stored = store_postgresql(posts, msg_ids, checked=checked, unanswered=unanswered)
        make = StoredMessage.of if checked else _message_stored
        messages = [
            make(post, msg_id, *stored[msg_id]) if msg_id in stored else None  # else a repeat, left out
            for post, msg_id in zip(posts, msg_ids, strict=True)
        ]
    else:
        assert not checked, "checked posts are PostgreSQL's (the known-pairs and known-groups ways)"
        written = [_message(post, msg_id) for post, msg_id in zip(posts, msg_ids, strict=True)]
        store_sqlite(posts, written)
        messages = [message if message.pk is not None else None for message in written]
    for post, message in zip(posts, messages, strict=True):
        if message is not None:
            events.message_sent(message, sender=post.sender, recipient=post.recipient, group_id=post.group_id)
    return messages


def _message_stored(post: Post, msg_id: str, pk: int, seq: int, sent_at: datetime) -> Message:
    message = _message(post, msg_id)
    message.pk, message.seq, message.sent_at = pk, seq, sent_at
    message._state.adding = False
    return message


def messages_of_requests(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Message]:
    """The messages that these requests (client_id, seq_id) made, by request; one query."""
    keys = {key for key in keys if key[1]}
    if not keys:
        return {}
    source, params = rows_source([("client_id", "text"), ("seq_id", "text")], sorted(keys))
    table = connection.ops.quote_name(Message._meta.db_table)
    found = Message.objects.raw(
        f"SELECT m.* FROM {table} AS m JOIN {source} ON m.client_id = v.client_id "
        f"AND m.seq_id = v.seq_id AND m.seq_id <> ''",
        params,
    )
    return {(m.client_id, m.seq_id): m for m in found}


def store_sqlite(posts: Sequence[Post], messages: list[Message]) -> None:
    """Three statements in a transaction (a savepoint in the caller's): take the numbers
    (_conversations_seq_take), insert the messages whose request made none before, move the
    senders' read positions (_read_positions_advance).

    Only when the insert left a repeat out (rare) would the number taken for it leave a gap:
    the savepoint is rolled back then, and the others stored again without it. SQLite has one
    writer at a time, so what the insert found stays true for the second go.
    """
    todo = list(range(len(messages)))
    while todo:
        try:
            with transaction.atomic():
                _store_sqlite([posts[i] for i in todo], [messages[i] for i in todo])
            return
        except _Repeats as repeats:
            for i in todo:
                if messages[i].msg_id in repeats.msg_ids:
                    messages[i].pk = messages[i].seq = messages[i].sent_at = None
            todo = [i for i in todo if messages[i].msg_id not in repeats.msg_ids]


class _Repeats(Exception):
    """Rolls back store_sqlite's savepoint: these messages' requests made messages before."""

    def __init__(self, msg_ids: set[str]):
        super().__init__(f"{len(msg_ids)} repeated requests")
        self.msg_ids = msg_ids


def _store_sqlite(posts: Sequence[Post], messages: list[Message]) -> None:
    counts = Counter((post.conversation_id, *post.pair) for post in posts)
    # As store_postgresql: a message's sent_at is its conversation's last activity, the later
    # of now and what it was, taken under the row lock, so sent_at never goes back as seq goes up.
    taken = _conversations_seq_take(counts, at=timezone.now())
    next_seq = {pk: taken[pk][0] - n + 1 for (pk, _low, _high), n in counts.items()}
    for message in messages:
        message.seq, message.sent_at = next_seq[message.conversation_id], taken[message.conversation_id][1]
        next_seq[message.conversation_id] += 1
    seen = _REQUEST_SEEN.format(message=connection.ops.quote_name(Message._meta.db_table), alias="v")
    rows_insert(messages, fields=MESSAGE_FIELDS, returning_pk_by="msg_id", where=f"NOT {seen}")
    left_out = {m.msg_id for m in messages if m.pk is None}
    if left_out:
        raise _Repeats(left_out)
    read_up_to = {(m.conversation_id, m.sender_id): (m.seq, m.sent_at) for m in messages}  # the last one wins
    _read_positions_advance(read_up_to)


# store_sqlite as one PostgreSQL statement (one round trip instead of three). A post whose
# request made a message before is left out first (`posts`), so it takes no number. The
# conversations' rows are locked in id order (concurrent batches cannot deadlock), FOR NO KEY
# UPDATE: rows that reference a conversation (receipt tallies, new members' read positions) take
# KEY SHARE on it, which FOR UPDATE would make wait (docs/architecture.md, "Row locks"); a message's
# sent_at is the later of now and its conversation's last activity, read under the lock, so
# sent_at never goes back as seq goes up; and all of it commits or rolls back with the
# transaction, so numbers stay gap-free. Each conversation is checked against the pair the
# caller gave (low, high; none for a group): if one is not there, the statement writes nothing
# and returns one row of NULLs instead of the messages, without an error (`ready`). Checked
# posts (the known-pairs and known-groups strategies) are stored only if every one also holds
# what the caller assumed (private: sender and recipient the active employees it took them
# for; group: the sender the active employee it took it for, still a member of the group the
# conversation is of, which is not dismissed; both: no message of the same request yet, and
# the caller's `unanswered` condition): if one does not, the statement writes nothing and
# returns no rows. (Should a conversation vanish while the statement runs, the NOT NULL of
# messages.seq still fails it whole.)
_STORE_IN_ONE_STATEMENT = """
WITH given AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb) AS v(
        ord int, conversation_id bigint, low bigint, high bigint, sender_id bigint, msg_id text,
        content jsonb, content_type text, client_id text, seq_id text, file_key text,
        sender_eid text, recipient_id bigint, recipient_eid text, recipient_agent boolean,
        group_eid text)
    LIMIT {rows}
), posts AS (
    SELECT * FROM given WHERE NOT {seen}
){checks}, counts AS (
    SELECT conversation_id, low, high, count(*) AS n FROM posts GROUP BY conversation_id, low, high
), locked AS (
    SELECT id FROM {conversation} WHERE id IN (SELECT conversation_id FROM counts) ORDER BY id FOR NO KEY UPDATE
){ready}, taken AS (
    UPDATE {conversation} AS c SET last_seq = c.last_seq + counts.n,
        last_activity_at = GREATEST(c.last_activity_at, %s::timestamptz)
    FROM counts WHERE c.id = counts.conversation_id AND c.id IN (SELECT id FROM locked)
        AND c.employee_low_id IS NOT DISTINCT FROM counts.low
        AND c.employee_high_id IS NOT DISTINCT FROM counts.high{when_ready}
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
    FROM numbered{when_ready_insert}
    RETURNING id, msg_id, seq, sent_at
), read AS (
    UPDATE {read_position} AS r SET last_read_seq = mine.seq, updated_at = mine.sent_at
    FROM (SELECT conversation_id, sender_id, max(seq) AS seq, max(sent_at) AS sent_at
          FROM numbered GROUP BY conversation_id, sender_id) AS mine
    WHERE r.conversation_id = mine.conversation_id AND r.employee_id = mine.sender_id
        AND r.last_read_seq < mine.seq
)
SELECT id, msg_id, seq, sent_at FROM inserted{not_ready}
"""


# Every conversation is the pair's (and, checked, every post new and verified).
_STORE_READY = """, ready AS (
    SELECT {verified}(SELECT count(*) FROM {conversation} AS c JOIN counts ON c.id = counts.conversation_id
             AND c.employee_low_id IS NOT DISTINCT FROM counts.low
             AND c.employee_high_id IS NOT DISTINCT FROM counts.high) = (SELECT count(*) FROM counts) AS ok
)"""
_STORE_VERIFIED = "(SELECT count(*) FROM verified) = (SELECT count(*) FROM given)\n        AND "


# What the known-pairs strategy assumed of a private post.
_STORE_CHECKS = """, verified AS (
    SELECT posts.ord FROM posts
    JOIN {employee} AS s ON s.id = posts.sender_id AND s.employee_id = posts.sender_eid AND s.is_active
    JOIN {employee} AS r ON r.id = posts.recipient_id AND r.employee_id = posts.recipient_eid
        AND r.is_active AND r.is_ai_agent = posts.recipient_agent
    {unanswered}
)"""

# What the known-groups strategy assumed of a group post: what selectors.group_access checks
# for a send (the group exists, is not dismissed, the sender is a member), and the sender the
# active employee it took it for (the dispatcher's identity check), the conversation the group's.
_STORE_GROUP_CHECKS = """, verified AS (
    SELECT posts.ord FROM posts
    JOIN {employee} AS s ON s.id = posts.sender_id AND s.employee_id = posts.sender_eid AND s.is_active
    JOIN {conversation} AS gc ON gc.id = posts.conversation_id
    JOIN {group} AS g ON g.id = gc.group_id AND g.group_id = posts.group_eid AND g.dismissed_at IS NULL
    JOIN {member} AS gm ON gm.group_id = g.id AND gm.employee_id = posts.sender_id
    {unanswered}
)"""


@functools.lru_cache(maxsize=64)
def _store_sql(rows: int, checked: str, unanswered: str) -> str:
    """_STORE_IN_ONE_STATEMENT for `rows` posts (planned_rows: the planner's row count),
    unchecked (""), or checked as private ("pair") or group ("group") posts: a few texts per
    process, each built once (formatting it was ~20 us a request)."""
    quote = connection.ops.quote_name
    checks = {"pair": _STORE_CHECKS, "group": _STORE_GROUP_CHECKS, "": ""}[checked]
    return _STORE_IN_ONE_STATEMENT.format(
        conversation=quote(Conversation._meta.db_table),
        message=quote(Message._meta.db_table),
        read_position=quote(ReadPosition._meta.db_table),
        rows=rows,
        seen=_REQUEST_SEEN.format(message=quote(Message._meta.db_table), alias="given"),
        checks=checks.format(
            employee=quote(Employee._meta.db_table),
            conversation=quote(Conversation._meta.db_table),
            group=quote(Group._meta.db_table),
            member=quote(GroupMember._meta.db_table),
            unanswered=f"WHERE {unanswered}" if unanswered else "",
        ),
        checked="AND posts.ord IN (SELECT ord FROM verified)" if checked else "",
        ready=_STORE_READY.format(
            verified=_STORE_VERIFIED if checked else "", conversation=quote(Conversation._meta.db_table)
        ),
        when_ready="\n        AND (SELECT ok FROM ready)",
        when_ready_insert=" WHERE (SELECT ok FROM ready)",
        # Unchecked: a conversation not the pair's is told apart from posts that were all repeats.
        not_ready=""
        if checked
        else "\nUNION ALL SELECT NULL, NULL, NULL, NULL WHERE NOT (SELECT ok FROM ready)",
    )


def store_postgresql(
    posts: Sequence[Post], msg_ids: Sequence[str], *, checked: bool = False, unanswered: str = ""
) -> dict[str, tuple[int, int, datetime]]:
    """The posts stored under these msg_ids in one statement: (pk, seq, sent_at) by msg_id of
    each stored (a repeat is left out)."""
    kind = ""
    if checked:
        kind = "group" if posts[0].group_id else "pair"
        if any(bool(post.group_id) != (kind == "group") for post in posts):
            raise ValueError("checked posts are all private or all to groups")
    sql = _store_sql(planned_rows(len(posts)), kind, unanswered)
    document = []
    for ord_, (post, msg_id) in enumerate(zip(posts, msg_ids, strict=True)):
        low, high = post.pair
        row = {
            "ord": ord_,
            "conversation_id": post.conversation_id,
            "low": low,
            "high": high,
            "sender_id": post.sender.pk,
            "msg_id": msg_id,
            "content": post.content.value,
            "content_type": post.content.type,
            "client_id": post.client_id,
            "seq_id": post.seq_id,
            "file_key": post.content.file_key or "",
        }
        if kind == "pair":
            row["sender_eid"] = post.sender.employee_id
            row["recipient_id"] = post.recipient.pk
            row["recipient_eid"] = post.recipient.employee_id
            row["recipient_agent"] = post.recipient.is_ai_agent
        elif kind == "group":
            row["sender_eid"] = post.sender.employee_id
            row["group_eid"] = post.group_id
        document.append(row)
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(document), timezone.now()])
        stored = {msg_id: (pk, seq, sent_at) for pk, msg_id, seq, sent_at in cursor.fetchall()}
    if None in stored:  # nothing was written
        raise Conversation.DoesNotExist("conversations vanished or not the pair's")
    if checked and len(stored) < len(posts):
        raise AssumptionFailed()  # nothing was written
    return stored


def _read_positions_advance(up_to: dict[tuple[int, int], tuple[int, datetime]]) -> None:
    """Move read positions (conversation pk, employee pk) forward to the given (seq, at); one
    UPDATE (SQLite)."""
    table = connection.ops.quote_name(ReadPosition._meta.db_table)
    adapt = connection.ops.adapt_datetimefield_value
    source, params = rows_source(
        [("conversation", "bigint"), ("employee", "bigint"), ("seq", "bigint"), ("at", "text")],
        [(conversation, employee, seq, adapt(at)) for (conversation, employee), (seq, at) in up_to.items()],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_read_seq = v.seq, updated_at = v.at FROM {source} "
            f"WHERE {table}.conversation_id = v.conversation AND {table}.employee_id = v.employee "
            f"AND {table}.last_read_seq < v.seq",
            params,
        )


def _conversations_seq_take(
    counts: dict[tuple[int, int | None, int | None], int], *, at: datetime
) -> dict[int, tuple[int, datetime]]:
    """Take `n` consecutive message numbers from each conversation of `counts`, (pk, low,
    high) -> n, in the current transaction, and move its last activity to `at` unless later;
    returns each conversation's new (last_seq, last_activity_at) by pk (its numbers end there). A conversation that is gone, or is not the pair's, raises
    Conversation.DoesNotExist (the caller's transaction then stores nothing).

    The SQLite half of store_sqlite (PostgreSQL takes the numbers inside its one write
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
        f"RETURNING {table}.id, {table}.last_seq, {table}.last_activity_at"
    )
    params = [connection.ops.adapt_datetimefield_value(at), *source_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        taken = {pk: (last_seq, _aware(activity)) for pk, last_seq, activity in cursor.fetchall()}
    if len(taken) != len(counts):
        missing = sorted({pk for pk, _low, _high in counts} - set(taken))
        raise Conversation.DoesNotExist(f"conversations vanished or not the pair's: {missing}")
    return taken


def _aware(value: datetime | str) -> datetime:
    """A timestamp SQLite handed back from a raw statement (text, or naive UTC)."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
