"""Group sends and recalls (spec 3.12, msg.recall), and finding a message a participant may see."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.context import operator_employee
from audit.services import audit_record
from mchat.errors import BadRequest, NotFound, PermissionDenied
from messaging import events, selectors
from messaging.content import Content, content_parse
from messaging.files import file_reference_check
from messaging.models import Conversation, GroupMember, Message
from messaging.participants import Participant
from messaging.services.conversations import conversation_loaded
from messaging.services.store import Post, messages_of_requests, messages_post
from org.models import Employee


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
