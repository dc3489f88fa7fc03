"""Group sends (spec 3.12), recalls (msg.recall), and finding a message a participant may see.

msg.send_group has one front door, `message_send_group`, and the two ways it serves a send,
side by side below it:

- `_send_to_known_group`: the sender named by employee_id only, before anyone is looked up
  (what the bridge's dispatcher tries first), to a group this process has let it send to
  before: ONE PostgreSQL statement checks everything the usual way checks and stores the
  message. None when it cannot (nothing stored); the caller then looks the sender up and
  comes again.
- `_send_looked_up`: the usual way: the group and the sender's membership looked up
  (selectors.group_access), then the store (messaging.services.store), in the caller's
  transaction.

A request (client_id, seq_id) that made a message before gets that message again: nothing is
stored or delivered twice (the store leaves repeats out and says so).
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.context import operator_employee
from audit.services import audit_record
from mchat.errors import BadRequest, MChatError, NotFound, PermissionDenied
from messaging import events, selectors
from messaging.content import Content, content_parse
from messaging.files import file_reference_check
from messaging.models import Conversation, GroupMember, Message
from messaging.participants import Participant
from messaging.services.conversations import conversation_loaded
from messaging.services.group_cache import KNOWN_GROUP_SENDS
from messaging.services.store import (
    AssumptionFailed,
    Post,
    StoredMessage,
    messages_of_requests,
    messages_post,
)
from org.models import Employee


def message_send_group(
    *,
    actor: Employee | str,
    group_id: str,
    content,
    client_id: str = "",
    seq_id: str = "",
    unanswered: str = "",
) -> Message | StoredMessage | None:
    """A message to a group the actor belongs to (not dismissed): one publish to the group
    topic, after commit. Refused: invalid content (400), an unknown or dismissed group (404),
    not a member (403), a file the actor may not use, a seq_id this device used in another
    conversation (400).

    The actor named by employee_id only: the known-groups strategy, None when it cannot serve
    the send. `unanswered` is then the caller's own SQL condition that the request
    (`posts.client_id`, `posts.seq_id`) was not answered before, checked in the same statement
    (the bridge's idempotency records, which also hold refusals).
    """
    if isinstance(actor, str):
        return _send_to_known_group(actor, group_id, content, client_id, seq_id, unanswered=unanswered)
    return _send_looked_up(actor, group_id, content, client_id, seq_id)


# --- to a group this process has seen the sender send to: one checked statement (PostgreSQL) ---


def _send_to_known_group(
    sender_id: str, group_id: str, content, client_id: str, seq_id: str, *, unanswered: str
) -> StoredMessage | None:
    """ONE statement that stores the message and checks what this process assumes: the sender
    still the active employee it remembers and still a member of the group, the group not
    dismissed and the conversation its own, no message made by the same request yet (a
    message is its own idempotency record), and `unanswered`.

    None when it cannot serve the send: a group this process has not seen the sender send to,
    content that is refused or names a file (the usual way answers those), or a check that
    fails (then what this process remembered of the pair is forgotten). Nothing is stored then.
    """
    if connection.vendor != "postgresql":
        return None
    known = KNOWN_GROUP_SENDS.known(sender_id, group_id)
    if known is None:
        return None
    try:
        parsed = content_parse(content)
    except MChatError:
        return None
    if parsed.file_key:
        return None
    post = Post(known.conversation_id, known.sender, parsed, client_id, seq_id, group_id=group_id)
    try:
        # In someone's transaction (a test's), a savepoint keeps it usable after a failed check.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            (message,) = messages_post([post], checked=True, unanswered=unanswered)
    except (AssumptionFailed, DatabaseError):
        # A check failed (nothing stored, no error in the database's log), or the statement
        # failed: what this process remembered may be stale.
        KNOWN_GROUP_SENDS.forget(sender_id, group_id)
        return None
    return message


# --- the usual way: sender and group looked up ---------------------------------------------------


def _send_looked_up(actor: Employee, group_id: str, content, client_id: str, seq_id: str) -> Message:
    parsed = content_parse(content)
    try:
        access = selectors.group_access(actor=actor, group_id=group_id)
    except (NotFound, PermissionDenied):
        # A repeat of a request that made a message in this group gets that message, as a
        # recorded answer is given again (bridge.dispatch), though the actor may no longer
        # send here: a send the known-groups strategy stored has no record but its message.
        earlier = _message_of_request_in_group(client_id=client_id, seq_id=seq_id, group_id=group_id)
        if earlier is None:
            raise
        return earlier
    if parsed.file_key:
        file_reference_check(sender=actor, key=parsed.file_key)
    conversation = selectors.group_conversation(group=access.group)
    message = _message_post(conversation, sender=actor, content=parsed, client_id=client_id, seq_id=seq_id)
    KNOWN_GROUP_SENDS.remember(Participant.of(actor), group_id, conversation.pk)
    return message


def message_recall(*, actor: Employee | None, msg_id: str) -> Message:
    """The sender within MCHAT_RECALL_WINDOW_SECONDS; a group's owner and admins at any time.

    The content is kept for the record but no longer served; participants get a recall event.
    Recalling a recalled message again answers the same and sends nothing.
    """
    with transaction.atomic():
        # Locked: of two concurrent recalls, the second sees the first and sends nothing.
        # FOR NO KEY UPDATE: receipt tallies, tasks and waits that reference it may be inserted meanwhile.
        message = Message.objects.select_for_update(no_key=True).get(pk=message_visible(actor, msg_id).pk)
        conversation = conversation_loaded(message.conversation_id)
        message.conversation = conversation
        if message.is_recalled:
            return message
        if conversation.is_group and conversation.group.is_dismissed:
            raise NotFound(_("群组不存在或已解散：%(id)s") % {"id": conversation.group.group_id})
        if actor is not None:
            _check_may_recall(actor, message, conversation)
        message.recalled_at = timezone.now()
        # From the console: the user's employee when there is one (else the deliveries say
        # "system", docs/protocol.md §12.3).
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


def _message_post(
    conversation: Conversation, *, sender: Employee, content: Content, client_id: str, seq_id: str
) -> Message:
    """Append to a group and deliver, once per request: a repeated (client_id, seq_id) gets
    the message its first copy created, and nothing is delivered again."""
    post = Post(
        conversation.pk,
        Participant.of(sender),
        content,
        client_id,
        seq_id,
        group_id=conversation.group.group_id,
    )
    (message,) = messages_post([post])
    if message is None:  # left out: the request made a message before
        message = _message_of_request(conversation, client_id=client_id, seq_id=seq_id)
    message.conversation, message.sender = conversation, sender
    return message


def _message_of_request(conversation: Conversation, *, client_id: str, seq_id: str) -> Message:
    """The message an earlier copy of this request created (the store left this one out);
    refused if that was in another conversation."""
    earlier = messages_of_requests([(client_id, seq_id)])[(client_id, seq_id)]
    if earlier.conversation_id != conversation.pk:
        raise BadRequest(_("seq_id 已被本设备的另一条消息使用"))
    return earlier


def _message_of_request_in_group(*, client_id: str, seq_id: str, group_id: str) -> Message | None:
    """The message this request made in this group before, if it did; one query."""
    if not seq_id:
        return None
    return (
        Message.objects.filter(client_id=client_id, seq_id=seq_id, conversation__group__group_id=group_id)
        .select_related("conversation__group", "sender")
        .first()
    )


def message_visible(actor: Employee | None, msg_id: str) -> Message:
    if actor is None:
        message = Message.objects.filter(msg_id=msg_id).select_related("sender").first()
        if message is None:
            raise NotFound(_("消息不存在：%(id)s") % {"id": msg_id})
        return message
    return selectors.message_for_participant(actor=actor, msg_id=msg_id)


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
