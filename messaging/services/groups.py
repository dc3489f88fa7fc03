"""Group lifecycle and membership (spec 3.7-3.10, DESIGN §5).

Roles: owner (the creator, one per group), admins, members. Owner and admins add and remove
members (admins only plain members); anyone may leave except the owner, who hands over first.
Every membership change re-renders the broker's group file so topic access follows at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit.context import SYSTEM_OPERATOR_ID, operator_employee
from audit.services import audit_record, changes_between
from mchat import broker_policy
from mchat.errors import BadRequest, PermissionDenied
from mchat.wire import isoformat_z
from messaging import ids, selectors
from messaging.models import Conversation, Group, GroupMember, ReadPosition
from messaging.services.notifications import group_notify
from org import services as org_services
from org.models import Employee

NAME_MAX_CHARS = 100
DESCRIPTION_MAX_CHARS = 500
Role = GroupMember.Role


@dataclass(frozen=True)
class GroupCreated:
    group: Group
    member_ids: list[str]


@dataclass(frozen=True)
class MembershipChange:
    group: Group
    employee_ids: list[str]  # added or removed
    member_count: int


@dataclass(frozen=True)
class GroupUpdated:
    group: Group
    fields: list[str]


def group_create(
    *, actor: Employee, name: str, member_ids: Sequence[str], description: str = ""
) -> GroupCreated:
    """A new group owned by `actor`, with `member_ids` (repeats collapsed) as members."""
    name = _group_name(name)
    description = _description(description)
    members = _active_members(member_ids, field="member_ids")
    others = [m for m in members if m.pk != actor.pk]
    _check_size(1 + len(others))
    now = timezone.now()
    with transaction.atomic():
        group = Group.objects.create(group_id=ids.group_id(), name=name, description=description, owner=actor)
        GroupMember.objects.bulk_create(
            [GroupMember(group=group, employee=actor, role=Role.OWNER)]
            + [GroupMember(group=group, employee=m, role=Role.MEMBER) for m in others]
        )
        conversation = Conversation.objects.create(
            kind=Conversation.Kind.GROUP, group=group, last_activity_at=now
        )
        ReadPosition.objects.bulk_create(
            [ReadPosition(conversation=conversation, employee=e) for e in [actor, *others]]
        )
        broker_policy.access_changed()
        everyone = [actor.employee_id] + [m.employee_id for m in others]
        group_notify(
            group=group,
            employee_ids=everyone,
            type="member_joined",
            title=_("入群通知"),
            inviter_id=actor.employee_id,
            member_ids=everyone,
        )
        audit_record(
            action="group_create",
            actor=actor,
            target=group,
            changes={
                "name": {"before": None, "after": name},
                "description": {"before": None, "after": description},
                "members": {"before": None, "after": everyone},
            },
        )
    return GroupCreated(group=group, member_ids=everyone)


def group_dismiss(*, actor: Employee | None, group_id: str, challenge_id=None, token=None) -> Group:
    """Owner only, with a fresh auth.challenge. Members stop receiving the group topic; the
    history stays readable by them as an archive."""
    with transaction.atomic():
        access = selectors.group_access(actor=actor, group_id=group_id, owner=True, lock=True)
        if actor is not None:
            org_services.challenge_consume(actor=actor, challenge_id=challenge_id, token=token)
        group = access.group
        group.dismissed_at = timezone.now()
        group.save(update_fields=["dismissed_at", "updated_at"])
        broker_policy.access_changed()
        broker_policy.group_access_revoked()
        group_notify(
            group=group,
            employee_ids=selectors.group_member_ids(group=group),
            type="group_dismissed",
            title=_("群组解散通知"),
            operator_id=_employee_id(actor),
            dismissed_at=isoformat_z(group.dismissed_at),
        )
        audit_record(
            action="group_dismiss",
            actor=actor,
            target=group,
            changes={"dismissed_at": {"before": None, "after": isoformat_z(group.dismissed_at)}},
        )
    return group


def group_member_add(*, actor: Employee | None, group_id: str, member_ids: Sequence[str]) -> MembershipChange:
    """Owner or admin adds active employees; ids already in the group are skipped."""
    with transaction.atomic():
        access = selectors.group_access(actor=actor, group_id=group_id, manage=True, lock=True)
        group = access.group
        members = _active_members(member_ids, field="member_ids")
        present = set(GroupMember.objects.filter(group=group).values_list("employee_id", flat=True))
        added = [m for m in members if m.pk not in present]
        count = len(present) + len(added)
        if added:
            _check_size(count)
            GroupMember.objects.bulk_create(
                [GroupMember(group=group, employee=m, role=Role.MEMBER) for m in added]
            )
            # New members start with nothing unread; earlier history stays readable.
            conversation = selectors.group_conversation(group=group)
            ReadPosition.objects.bulk_create(
                [
                    ReadPosition(conversation=conversation, employee=m, last_read_seq=conversation.last_seq)
                    for m in added
                ],
                update_conflicts=True,
                unique_fields=["conversation", "employee"],
                update_fields=["last_read_seq"],
            )
            broker_policy.access_changed()
            group_notify(
                group=group,
                employee_ids=selectors.group_member_ids(group=group),
                type="member_joined",
                title=_("入群通知"),
                inviter_id=_employee_id(actor),
                member_ids=[m.employee_id for m in added],
            )
            audit_record(
                action="group_member_add",
                actor=actor,
                target=group,
                changes={"members_added": [m.employee_id for m in added], "member_count": count},
            )
    return MembershipChange(group, [m.employee_id for m in added], count)


def group_member_remove(
    *, actor: Employee | None, group_id: str, member_ids: Sequence[str]
) -> MembershipChange:
    """Owner removes anyone but itself, an admin removes plain members, anyone may leave.

    The removed are told too, and stop receiving the group topic at once.
    """
    wanted = _id_list(member_ids, field="member_ids")
    with transaction.atomic():
        access = selectors.group_access(actor=actor, group_id=group_id, lock=True)
        group = access.group
        rows = list(
            GroupMember.objects.filter(group=group, employee__employee_id__in=wanted).select_related(
                "employee"
            )
        )
        found = {m.employee.employee_id for m in rows}
        strangers = [i for i in wanted if i not in found]
        if strangers:
            raise BadRequest(_("member_ids 包含非本群成员：%(ids)s") % {"ids": ", ".join(strangers)})
        for row in rows:
            _check_may_remove(access, row)
        GroupMember.objects.filter(pk__in=[m.pk for m in rows]).delete()
        conversation = selectors.group_conversation(group=group)
        ReadPosition.objects.filter(
            conversation=conversation, employee_id__in=[m.employee_id for m in rows]
        ).delete()
        broker_policy.access_changed()
        broker_policy.group_access_revoked()
        removed = [m.employee.employee_id for m in rows]
        remaining = selectors.group_member_ids(group=group)
        leaving = actor is not None and removed == [actor.employee_id]
        group_notify(
            group=group,
            employee_ids=remaining + removed,
            type="member_removed",
            title=_("退群通知") if leaving else _("移出群聊通知"),
            operator_id=_employee_id(actor),
            member_ids=removed,
        )
        audit_record(
            action="group_member_remove",
            actor=actor,
            target=group,
            changes={"members_removed": removed, "member_count": len(remaining)},
        )
    return MembershipChange(group, removed, len(remaining))


def group_update(
    *,
    actor: Employee | None,
    group_id: str,
    name: str | None = None,
    description: str | None = None,
    owner_id: str | None = None,
    admin_ids: Sequence[str] | None = None,
) -> GroupUpdated:
    """Name and description: owner or admins. Owner transfer and the admin list: owner only.

    On transfer the former owner becomes an admin; `admin_ids` then replaces the admin list
    when given as well. A rename is announced to every member.
    """
    if name is None and description is None and owner_id is None and admin_ids is None:
        raise BadRequest(_("updates 不能为空"))
    with transaction.atomic():
        access = selectors.group_access(
            actor=actor,
            group_id=group_id,
            manage=True,
            owner=owner_id is not None or admin_ids is not None,
            lock=True,
        )
        group = access.group
        changed: list[str] = []
        old_name = group.name
        before = _audited_fields(group, with_roles=owner_id is not None or admin_ids is not None)
        if name is not None and _group_name(name) != group.name:
            group.name = _group_name(name)
            changed.append("name")
        if description is not None and _description(description) != group.description:
            group.description = _description(description)
            changed.append("description")
        if owner_id is not None and owner_id != group.owner.employee_id:
            _transfer_ownership(group, owner_id)
            changed.append("owner_id")
        if admin_ids is not None and _replace_admins(group, admin_ids):
            changed.append("admin_ids")
        if changed:
            group.save()
        if "name" in changed:
            group_notify(
                group=group,
                employee_ids=selectors.group_member_ids(group=group),
                type="group_renamed",
                title=_("群名称变更通知"),
                old_name=old_name,
                operator_id=_employee_id(actor),
            )
        if changed:
            after = _audited_fields(group, with_roles=owner_id is not None or admin_ids is not None)
            audit_record(
                action="group_update",
                actor=actor,
                target=group,
                changes=changes_between(before, after),
            )
    return GroupUpdated(group, changed)


# --- rules ---------------------------------------------------------------------------------------


def _check_may_remove(access: selectors.GroupAccess, row: GroupMember) -> None:
    if row.role == Role.OWNER:
        raise PermissionDenied(_("群主不能退出或被移出群组，请先转让群主"))
    if access.membership is None or row.employee_id == access.membership.employee_id:
        return  # trusted caller, or leaving
    if access.role == Role.OWNER or (access.role == Role.ADMIN and row.role == Role.MEMBER):
        return
    raise PermissionDenied()


def _transfer_ownership(group: Group, owner_id: str) -> None:
    new = (
        GroupMember.objects.filter(group=group, employee__employee_id=owner_id, employee__is_active=True)
        .select_related("employee")
        .first()
    )
    if new is None:
        raise BadRequest(_("owner_id 必须是本群的在职成员：%(id)s") % {"id": owner_id})
    GroupMember.objects.filter(group=group, role=Role.OWNER).update(role=Role.ADMIN)
    new.role = Role.OWNER
    new.save(update_fields=["role"])
    group.owner = new.employee


def _replace_admins(group: Group, admin_ids: Sequence[str]) -> bool:
    wanted = list(dict.fromkeys(admin_ids))
    rows = {
        m.employee.employee_id: m
        for m in GroupMember.objects.filter(group=group, employee__employee_id__in=wanted).select_related(
            "employee"
        )
    }
    strangers = [i for i in wanted if i not in rows]
    if strangers:
        raise BadRequest(_("admin_ids 包含非本群成员：%(ids)s") % {"ids": ", ".join(strangers)})
    if any(m.role == Role.OWNER for m in rows.values()):
        raise BadRequest(_("admin_ids 不能包含群主"))
    admins = GroupMember.objects.filter(group=group).exclude(role=Role.OWNER)
    before = set(admins.filter(role=Role.ADMIN).values_list("pk", flat=True))
    after = {m.pk for m in rows.values()}
    if before == after:
        return False
    admins.filter(pk__in=before - after).update(role=Role.MEMBER)
    admins.filter(pk__in=after - before).update(role=Role.ADMIN)
    return True


def _check_size(count: int) -> None:
    if count > settings.MCHAT_GROUP_MAX_MEMBERS:
        raise BadRequest(
            _("member_ids 超出群成员上限（%(limit)d 人）") % {"limit": settings.MCHAT_GROUP_MAX_MEMBERS}
        )


def _id_list(values, *, field: str) -> list[str]:
    if not values:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    return list(dict.fromkeys(values))


def _active_members(member_ids, *, field: str) -> list[Employee]:
    members, missing = selectors.active_employees(employee_ids=_id_list(member_ids, field=field))
    if missing:
        raise BadRequest(
            _("%(field)s 包含不存在或已离职的员工：%(ids)s") % {"field": field, "ids": ", ".join(missing)}
        )
    return members


def _group_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise BadRequest(_("name 不能为空"))
    if len(name) > NAME_MAX_CHARS:
        raise BadRequest(_("name 不能超过 %(limit)d 个字符") % {"limit": NAME_MAX_CHARS})
    return name


def _description(description: str | None) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX_CHARS:
        raise BadRequest(_("description 不能超过 %(limit)d 个字符") % {"limit": DESCRIPTION_MAX_CHARS})
    return description


def _employee_id(actor: Employee | None) -> str:
    """Who did it, for deliveries (operator_id, inviter_id): the employee, else the console or
    REST user's employee, else "system" (docs/protocol.md §12.3)."""
    if actor is None:
        actor = operator_employee()
    return actor.employee_id if actor is not None else SYSTEM_OPERATOR_ID


def _audited_fields(group: Group, *, with_roles: bool) -> dict:
    fields = {"name": group.name, "description": group.description}
    if with_roles:
        fields["owner_id"] = group.owner.employee_id
        fields["admin_ids"] = sorted(
            GroupMember.objects.filter(group=group, role=Role.ADMIN).values_list(
                "employee__employee_id", flat=True
            )
        )
    return fields
