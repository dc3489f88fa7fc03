"""Sends to AI agents that are answered later (DESIGN §5, spec 3.11, 3.20): a private message
to an agent is answered when the agent acknowledges it, or with 504 when its deadline passes.

Nobody blocks. msg.send_private stores the message as usual and opens a wait
(`agent_ack_wait_open`, in the send's transaction, `sends_atomic`, so a wait exists exactly
when its message does); the request is answered by whoever resolves the wait first, in any process:

- the agent's msg.read_ack covering the message (`agent_acknowledged`, called by read_ack
  inside the acknowledgement's transaction): code 0 with the spec 3.11 `data`
  {msg_id, to_employee_id, sent_at, seq};
- the deadline sweep (`agent_ack_waits_expire_due`, a periodic job): code 504
  "Agent 响应超时", data null. The message stays stored and delivered; the agent answers it
  when it comes back.

A wait is also the request's record while it waits: a repeat of the request gets what the
wait says (`agent_ack_answers`: nothing while pending, the answer once resolved).

Exactly once: a row is taken with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL) and then
switched by a conditional UPDATE ... WHERE state = 'pending', so of two resolvers (or two
processes sweeping) only one publishes the answer, after its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from mchat.errors import DeadlineExceeded
from mchat.outbox import publish_json_on_commit
from mchat.wire import response_payload, response_topic
from messaging.models import AgentAckWait, Message
from messaging.participants import Participant
from org.models import AgentProfile, Employee

logger = logging.getLogger("mchat.messaging.agent_waits")

DEFAULT_ACK_DEADLINE_SECONDS = AgentProfile._meta.get_field("ack_deadline_seconds").default
SWEEP_BATCH = 200  # waits resolved per transaction by one sweep


def answer_waits(*, sender: Participant, recipient: Participant) -> bool:
    """A send from `sender` to `recipient` is answered when the recipient acknowledges it."""
    return recipient.is_ai_agent and recipient.pk != sender.pk


def sends_atomic(pairs: Iterable[tuple[Participant, Participant]]) -> AbstractContextManager:
    """The transaction to store private sends (sender, recipient) in: when an answer waits for
    an AI agent, one that also records the wait (agent_ack_wait_open), so a wait exists
    exactly when its message does; otherwise none (the store is atomic by itself)."""
    if any(answer_waits(sender=sender, recipient=recipient) for sender, recipient in pairs):
        return transaction.atomic()
    return nullcontext()


def agent_ack_wait_open(
    *,
    client_id: str,
    seq_id: str,
    message: Message,
    sender: Participant,
    recipient: Participant,
    data: dict,
) -> bool:
    """Whether msg.send_private's answer waits for `recipient` (an AI agent other than the
    sender) to acknowledge the message; False: answer now with `data`. Raises the 504 when
    this request's wait has expired already (a repeat).

    Run it in the send's transaction (sends_atomic), so the wait exists exactly when the
    message does.
    """
    if not answer_waits(sender=sender, recipient=recipient):
        return False
    earlier = AgentAckWait.objects.filter(client_id=client_id, seq_id=seq_id).first()
    if earlier is not None:
        # The same request again after its idempotency record was purged: the same outcome
        # (acknowledged: its data, which is this message's).
        if earlier.state == AgentAckWait.State.EXPIRED:
            raise agent_timeout()
        return earlier.state == AgentAckWait.State.PENDING
    seconds = (
        AgentProfile.objects.filter(employee_id=recipient.pk)
        .values_list("ack_deadline_seconds", flat=True)
        .first()
        or DEFAULT_ACK_DEADLINE_SECONDS
    )
    AgentAckWait.objects.create(
        client_id=client_id,
        seq_id=seq_id,
        message=message,
        agent_id=recipient.pk,
        conversation_id=message.conversation_id,
        seq=message.seq,
        deadline=message.sent_at + timedelta(seconds=seconds),
        response_data=data,
    )
    return True


def agent_ack_answers(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The answers of resolved waits by (client_id, seq_id); a pending or unknown key is absent."""
    keys = set(keys)
    if not keys:
        return {}
    matching = Q()
    for client_id, seq_id in keys:
        matching |= Q(client_id=client_id, seq_id=seq_id)
    waits = AgentAckWait.objects.filter(matching).exclude(state=AgentAckWait.State.PENDING)
    return {(w.client_id, w.seq_id): _answer(w, w.state) for w in waits}


def agent_acknowledged(*, agent: Employee, conversation_id: int, up_to_seq: int) -> int:
    """`agent` has read conversation `conversation_id` up to `up_to_seq`: answer the sends it
    covers with code 0. Call inside the acknowledgement's transaction; returns how many."""
    if not agent.is_ai_agent:
        return 0
    waits = AgentAckWait.objects.filter(
        agent=agent, conversation_id=conversation_id, seq__lte=up_to_seq, state=AgentAckWait.State.PENDING
    )
    return _resolve(waits, AgentAckWait.State.ACKNOWLEDGED)


def agent_ack_waits_expire_due() -> int:
    """Answer 504 to every send whose agent's deadline has passed (a periodic job)."""
    now = timezone.now()
    if not _any_due(now):  # the common case: one indexed read, no write lock
        return 0
    due = AgentAckWait.objects.filter(state=AgentAckWait.State.PENDING, deadline__lte=now)
    expired = 0
    while True:
        with transaction.atomic():
            done = _resolve(due, AgentAckWait.State.EXPIRED)
        expired += done
        if done < SWEEP_BATCH:
            return expired


_DUE_SQL: str | None = None  # built on first use (the database's quoting)


def _any_due(now) -> bool:
    """Whether a pending wait's deadline has passed: every bridge asks this about 5 times a
    second, so it is one fixed SQL text (prepared once per connection on PostgreSQL, no query
    building) on the partial index agent_ack_wait_due, returning no row in the common case."""
    global _DUE_SQL
    if _DUE_SQL is None:
        quote, fields = connection.ops.quote_name, AgentAckWait._meta
        _DUE_SQL = (
            f"SELECT 1 FROM {quote(fields.db_table)} WHERE {quote(fields.get_field('state').column)} = %s"
            f" AND {quote(fields.get_field('deadline').column)} <= %s LIMIT 1"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            _DUE_SQL, [AgentAckWait.State.PENDING.value, connection.ops.adapt_datetimefield_value(now)]
        )
        return cursor.fetchone() is not None


def agent_ack_waits_purge() -> int:
    """Forget resolved waits older than the idempotency window (a periodic job)."""
    cutoff = timezone.now() - timedelta(hours=settings.MCHAT_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = AgentAckWait.objects.filter(resolved_at__lt=cutoff).delete()
    return deleted


def agent_timeout() -> DeadlineExceeded:
    return DeadlineExceeded(_("Agent 响应超时"))


def _answer(wait: AgentAckWait, outcome: str) -> dict:
    if outcome == AgentAckWait.State.ACKNOWLEDGED:
        return response_payload(wait.seq_id, 0, "ok", wait.response_data)
    timeout = agent_timeout()
    return response_payload(wait.seq_id, timeout.code, str(timeout.message), None)


def _resolve(waits: QuerySet[AgentAckWait], outcome: str) -> int:
    """Resolve up to SWEEP_BATCH of `waits` (in the current transaction); returns how many
    this call resolved. Rows another transaction holds are skipped: it resolves them."""
    now = timezone.now()
    taken = list(waits.select_for_update(skip_locked=True).order_by("pk")[:SWEEP_BATCH])
    resolved = 0
    for wait in taken:
        # Where rows cannot be locked (SQLite serialises writers instead), this UPDATE is the
        # arbiter: only the first resolver still finds the row pending.
        if not AgentAckWait.objects.filter(pk=wait.pk, state=AgentAckWait.State.PENDING).update(
            state=outcome, resolved_at=now
        ):
            continue
        publish_json_on_commit(response_topic(wait.client_id, wait.seq_id), _answer(wait, outcome), qos=1)
        resolved += 1
    if resolved:
        logger.debug("resolved %d agent acknowledgement waits as %s", resolved, outcome)
    return resolved
