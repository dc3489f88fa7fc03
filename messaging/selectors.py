"""Reads of groups, conversations and messages, with the access checks that guard them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, NotFound, PermissionDenied
from messaging.models import Conversation, Group, GroupMember, Message, ReadPosition
from org import selectors as org_selectors
from org.models import Employee

ROLE_ORDER = {GroupMember.Role.OWNER: 0, GroupMember.Role.ADMIN: 1, GroupMember.Role.MEMBER: 2}


def group_memberships_for_broker() -> Iterator[tuple[str, str]]:
    """(group_id, employee_id) of every current membership the broker must let read."""
    return (
        GroupMember.objects.filter(group__dismissed_at__isnull=True, employee__is_active=True)
        .order_by("group__group_id", "employee__employee_id")
        .values_list("group__group_id", "employee__employee_id")
        .iterator(chunk_size=5000)
    )


# --- employees ---------------------------------------------------------------------------------


def active_employees(*, employee_ids: Iterable[str]) -> tuple[list[Employee], list[str]]:
    """The active employees named, in the order given without repeats; and the ids that are
    unknown or inactive."""
    wanted = list(dict.fromkeys(employee_ids))
    found = {
        e.employee_id: e
        for e in Employee.objects.filter(employee_id__in=wanted, is_active=True).only(
            "id", "employee_id", "name", "is_active", "is_ai_agent"
        )
    }
    return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]


def peer_get(*, employee_id: str, active: bool = True) -> Employee:
    """An employee as a conversation's peer (org.selectors.employee_get); NotFound says it
    may have left."""
    try:
        return org_selectors.employee_get(employee_id=employee_id, active=active)
    except NotFound:
        raise NotFound(_("员工不存在或已离职：%(id)s") % {"id": employee_id}) from None


# --- groups ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupAccess:
    group: Group
    membership: GroupMember | None  # None for a trusted caller (admin console, tasks)

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None


def group_get(*, group_id: str, include_dismissed: bool = False, lock: bool = False) -> Group:
    groups = Group.objects.filter(group_id=group_id)
    if not include_dismissed:
        groups = groups.filter(dismissed_at__isnull=True)
    if lock:
        groups = groups.select_for_update()
    group = groups.select_related("owner").first()
    if group is None:
        raise NotFound(_("群组不存在或已解散：%(id)s") % {"id": group_id})
    return group


def group_access(
    *,
    actor: Employee | None,
    group_id: str,
    manage: bool = False,
    owner: bool = False,
    include_dismissed: bool = False,
    lock: bool = False,
) -> GroupAccess:
    """The group and the actor's membership; NotFound if it does not exist (or is dismissed),
    PermissionDenied if the actor is not a member, or not owner/admin (`manage`) or not the
    owner (`owner`). `lock` takes the group row for the rest of the transaction: membership
    writes are serialised per group."""
    group = group_get(group_id=group_id, include_dismissed=include_dismissed, lock=lock)
    if actor is None:
        return GroupAccess(group, None)
    membership = GroupMember.objects.filter(group=group, employee=actor).first()
    if membership is None:
        raise PermissionDenied()
    if owner and membership.role != GroupMember.Role.OWNER:
        raise PermissionDenied()
    if manage and not membership.manages_group:
        raise PermissionDenied()
    return GroupAccess(group, membership)


def group_memberships(*, group: Group) -> list[GroupMember]:
    """Members with their roles: owner, admins, then members, each by join time."""
    rows = list(
        GroupMember.objects.filter(group=group).select_related("employee").order_by("joined_at", "pk")
    )
    return sorted(rows, key=lambda m: ROLE_ORDER[m.role])


def group_member_ids(*, group: Group) -> list[str]:
    return list(
        GroupMember.objects.filter(group=group).order_by("pk").values_list("employee__employee_id", flat=True)
    )


def groups_of(*, employee: Employee) -> QuerySet[GroupMember]:
    """The employee's memberships of groups that are not dismissed, newest group first."""
    return (
        GroupMember.objects.filter(employee=employee, group__dismissed_at__isnull=True)
        .select_related("group", "group__owner")
        .annotate(member_count=Count("group__memberships"))
        .order_by("-group__created_at", "-group__pk")
    )


# --- conversations -----------------------------------------------------------------------------


def private_pair(a: Employee, b: Employee) -> tuple[Employee, Employee]:
    return (a, b) if a.pk <= b.pk else (b, a)


def private_key(a: Employee, b: Employee) -> tuple[int, int]:
    """The pair's (employee_low_id, employee_high_id): its private conversation's identity."""
    return private_key_of(a.pk, b.pk)


def private_key_of(a: int, b: int) -> tuple[int, int]:
    """private_key from the employees' primary keys."""
    return (a, b) if a <= b else (b, a)


def private_conversation(*, a: Employee, b: Employee) -> Conversation | None:
    low, high = private_pair(a, b)
    return (
        Conversation.objects.filter(kind=Conversation.Kind.PRIVATE, employee_low=low, employee_high=high)
        .select_related("employee_low", "employee_high")
        .first()
    )


def group_conversation(*, group: Group) -> Conversation:
    conversation = Conversation.objects.select_related("group").get(group=group)
    return conversation


@dataclass(frozen=True)
class ConversationRef:
    """A conversation as a client names it: (private, peer) or (group, group_id)."""

    conversation_type: str
    peer_employee_id: str | None = None
    group_id: str | None = None


def conversation_for_reading(*, actor: Employee, ref: ConversationRef) -> Conversation | None:
    """The conversation the actor may read, or None for a private pair that never talked.

    Private: the peer must exist (former employees too). Group: the actor must be a member;
    a dismissed group stays readable by the members it had.
    """
    if ref.conversation_type == Conversation.Kind.PRIVATE:
        peer = peer_get(employee_id=ref.peer_employee_id, active=False)
        return private_conversation(a=actor, b=peer)
    access = group_access(actor=actor, group_id=ref.group_id, include_dismissed=True)
    return group_conversation(group=access.group)


def message_for_participant(*, actor: Employee, msg_id: str) -> Message:
    """A message the actor can see (participant of its conversation), else NotFound."""
    message = (
        Message.objects.filter(msg_id=msg_id)
        .select_related(
            "sender",
            "conversation",
            "conversation__group",
            "conversation__employee_low",
            "conversation__employee_high",
        )
        .first()
    )
    if message is None or not is_participant(actor=actor, conversation=message.conversation):
        raise NotFound(_("消息不存在：%(id)s") % {"id": msg_id})
    return message


def is_participant(*, actor: Employee, conversation: Conversation) -> bool:
    if conversation.is_group:
        return GroupMember.objects.filter(group_id=conversation.group_id, employee=actor).exists()
    return actor.pk in (conversation.employee_low_id, conversation.employee_high_id)


def read_position(*, conversation: Conversation, employee: Employee) -> int:
    return (
        ReadPosition.objects.filter(conversation=conversation, employee=employee)
        .values_list("last_read_seq", flat=True)
        .first()
    ) or 0


def message_history(
    *,
    conversation: Conversation,
    before_seq: int | None = None,
    after_seq: int | None = None,
    limit: int,
) -> tuple[list[Message], bool]:
    """One page of a conversation in ascending seq, and whether more lie beyond it.

    With `after_seq` the page starts right after it (filling a gap, catching up) and "more"
    means newer messages; otherwise the page ends right before `before_seq` (or at the newest)
    and "more" means older ones. Both together bound the range on each side.
    """
    messages = Message.objects.filter(conversation=conversation).select_related("sender")
    if before_seq is not None:
        messages = messages.filter(seq__lt=before_seq)
    if after_seq is not None:
        page = list(messages.filter(seq__gt=after_seq).order_by("seq")[: limit + 1])
        return page[:limit], len(page) > limit
    page = list(messages.order_by("-seq")[: limit + 1])
    return list(reversed(page[:limit])), len(page) > limit


@dataclass(frozen=True)
class ConversationSummary:
    conversation: Conversation
    last_message: Message | None
    last_read_seq: int

    @property
    def unread_count(self) -> int:
        return max(0, self.conversation.last_seq - self.last_read_seq)


def conversations_of(
    *, employee: Employee, limit: int, cursor: str | None = None
) -> tuple[list[ConversationSummary], str | None]:
    """The employee's conversations, most recently active first, and the next page's cursor.

    Private pairs appear once a message was sent; groups as soon as the employee is a member
    (dismissed groups included, as read-only archives).
    """
    my_groups = GroupMember.objects.filter(employee=employee).values("group_id")
    conversations = (
        Conversation.objects.filter(
            Q(kind=Conversation.Kind.PRIVATE, last_seq__gt=0)
            & (Q(employee_low=employee) | Q(employee_high=employee))
            | Q(kind=Conversation.Kind.GROUP, group_id__in=my_groups)
        )
        .select_related("group", "employee_low", "employee_high")
        .annotate(
            my_last_read_seq=Subquery(
                ReadPosition.objects.filter(conversation=OuterRef("pk"), employee=employee).values(
                    "last_read_seq"
                )[:1]
            ),
            last_message_pk=Subquery(
                Message.objects.filter(conversation=OuterRef("pk"), seq=OuterRef("last_seq")).values("pk")[:1]
            ),
        )
        .order_by("-last_activity_at", "-pk")
    )
    if cursor:
        at, pk = _parse_cursor(cursor)
        conversations = conversations.filter(Q(last_activity_at__lt=at) | Q(last_activity_at=at, pk__lt=pk))
    page = list(conversations[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    last_messages = Message.objects.select_related("sender").in_bulk(
        [c.last_message_pk for c in page if c.last_message_pk]
    )
    summaries = [
        ConversationSummary(c, last_messages.get(c.last_message_pk), c.my_last_read_seq or 0) for c in page
    ]
    next_cursor = _cursor(page[-1]) if more and page else None
    return summaries, next_cursor


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _cursor(conversation: Conversation) -> str:
    # Integer microseconds: exact, unlike a float timestamp.
    return f"{(conversation.last_activity_at - _EPOCH) // _MICROSECOND}.{conversation.pk}"


def _parse_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        micros, pk = cursor.split(".")
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError):
        raise BadRequest(_("cursor 格式不正确")) from None
