"""Answers that come later: a private message to an AI agent is answered when the agent
acknowledges it, or with 504 when its deadline passes (DESIGN §5, spec 3.11, 3.20).

The bridge never waits. The handler stores the message as usual and returns `Deferred()`;
the dispatcher publishes nothing, and a repeat of the request meanwhile gets nothing either:
served one by one, the request is recorded with no answer yet (ProcessedRequest.response
NULL); served in a batch (send_private_many), the wait itself is the record, as a repeat
finds the message and `agent_ack_wait` its wait. The answer is written (to the record, if
there is one) and published by whoever resolves the AgentAckWait first, in any bridge process:

- the agent's msg.read_ack covering the message (`agent_acknowledged`, called by the
  messaging service inside the acknowledgement's transaction): code 0 with the spec 3.11
  `data` {msg_id, to_employee_id, sent_at, seq};
- the deadline sweep (`expire_due`, a periodic job of every bridge process): code 504
  "Agent 响应超时", data null. The message stays stored and delivered; the agent answers it
  when it comes back.

Exactly once: a row is taken with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL) and then
switched by a conditional UPDATE ... WHERE state = 'pending', so of two resolvers (or two
processes sweeping) only one writes the answer and publishes it, after its commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from bridge import protocol
from bridge.handlers import Request
from bridge.models import AgentAckWait, ProcessedRequest
from bridge.publisher import publish_json_on_commit
from mchat.errors import DeadlineExceeded
from org.models import AgentProfile, Employee

logger = logging.getLogger("mchat.bridge.deferred")

DEFAULT_ACK_DEADLINE_SECONDS = AgentProfile._meta.get_field("ack_deadline_seconds").default
SWEEP_BATCH = 200  # waits resolved per transaction by one sweep


class Deferred:
    """Returned by a handler whose answer is published later by whoever resolves it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Deferred()"


def agent_ack_wait(*, request: Request, message, recipient: Employee, data: dict) -> dict | Deferred:
    """msg.send_private's answer: `data` now, or Deferred when `recipient` is an AI agent
    (other than the sender) that has not acknowledged the message yet.

    Runs in the request's transaction, so the wait exists exactly when the message does.
    """
    if not recipient.is_ai_agent or recipient.pk == request.employee.pk:
        return data
    earlier = AgentAckWait.objects.filter(client_id=request.client_id, seq_id=request.seq_id).first()
    if earlier is not None:
        # The same request again after its idempotency record was purged: the same outcome.
        if earlier.state == AgentAckWait.State.EXPIRED:
            raise _agent_timeout()
        if earlier.state == AgentAckWait.State.ACKNOWLEDGED:
            return earlier.response_data
        return Deferred()
    seconds = (
        AgentProfile.objects.filter(employee=recipient).values_list("ack_deadline_seconds", flat=True).first()
        or DEFAULT_ACK_DEADLINE_SECONDS
    )
    AgentAckWait.objects.create(
        client_id=request.client_id,
        seq_id=request.seq_id,
        message=message,
        agent=recipient,
        conversation_id=message.conversation_id,
        seq=message.seq,
        deadline=message.sent_at + timedelta(seconds=seconds),
        response_data=data,
    )
    return Deferred()


def agent_acknowledged(*, agent: Employee, conversation_id: int, up_to_seq: int) -> int:
    """`agent` has read conversation `conversation_id` up to `up_to_seq`: answer the sends it
    covers with code 0. Call inside the acknowledgement's transaction; returns how many."""
    if not agent.is_ai_agent:
        return 0
    waits = AgentAckWait.objects.filter(
        agent=agent, conversation_id=conversation_id, seq__lte=up_to_seq, state=AgentAckWait.State.PENDING
    )
    return _resolve(waits, AgentAckWait.State.ACKNOWLEDGED)


def expire_due() -> int:
    """Answer 504 to every send whose agent's deadline has passed (a periodic bridge job)."""
    due = AgentAckWait.objects.filter(state=AgentAckWait.State.PENDING, deadline__lte=timezone.now())
    if not due.exists():  # the common case: one indexed read, no write lock
        return 0
    expired = 0
    while True:
        with transaction.atomic():
            done = _resolve(due, AgentAckWait.State.EXPIRED)
        expired += done
        if done < SWEEP_BATCH:
            return expired


def resolved_waits_purge() -> int:
    """Forget resolved waits older than the idempotency window (a periodic bridge job)."""
    cutoff = timezone.now() - timedelta(hours=settings.MCHAT_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = AgentAckWait.objects.filter(resolved_at__lt=cutoff).delete()
    return deleted


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
        if outcome == AgentAckWait.State.ACKNOWLEDGED:
            response = protocol.response_payload(wait.seq_id, 0, "ok", wait.response_data)
        else:
            timeout = _agent_timeout()
            response = protocol.response_payload(wait.seq_id, timeout.code, str(timeout.message), None)
        ProcessedRequest.objects.filter(
            client_id=wait.client_id, seq_id=wait.seq_id, response__isnull=True
        ).update(response=response)
        publish_json_on_commit(protocol.response_topic(wait.client_id, wait.seq_id), response, qos=1)
        resolved += 1
    if resolved:
        logger.debug("resolved %d agent acknowledgement waits as %s", resolved, outcome)
    return resolved


def _agent_timeout() -> DeadlineExceeded:
    return DeadlineExceeded(_("Agent 响应超时"))
