"""Every write and business rule of groups and messages (keyword-only, transactional)."""

from messaging.services.conversations import (
    private_conversation_get_or_create,
    private_conversations_get_or_create,
)
from messaging.services.group_cache import known_group_sends_clear
from messaging.services.groups import (
    GroupCreated,
    GroupUpdated,
    MembershipChange,
    group_create,
    group_dismiss,
    group_member_add,
    group_member_remove,
    group_update,
)
from messaging.services.messages import message_recall, message_send_group
from messaging.services.notifications import group_notify, system_notification_deliver
from messaging.services.pair_cache import private_conversation_ids_clear
from messaging.services.private_sends import PrivateSend, PrivateSent, message_send_private
from messaging.services.read_positions import ReadAck, read_ack, read_position_move
from messaging.services.receipts import group_receipt_counts, group_receipts_flush

__all__ = [
    "GroupCreated",
    "GroupUpdated",
    "MembershipChange",
    "PrivateSend",
    "PrivateSent",
    "ReadAck",
    "group_create",
    "group_dismiss",
    "group_member_add",
    "group_member_remove",
    "group_notify",
    "group_receipt_counts",
    "group_receipts_flush",
    "group_update",
    "known_group_sends_clear",
    "message_recall",
    "message_send_group",
    "message_send_private",
    "private_conversation_get_or_create",
    "private_conversation_ids_clear",
    "private_conversations_get_or_create",
    "read_ack",
    "read_position_move",
    "system_notification_deliver",
]
