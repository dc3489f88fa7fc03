"""Group actions: spec 3.7-3.10, plus group.update, group.list and group.info (docs/protocol.md)."""

from __future__ import annotations

from rest_framework import serializers

from bridge.handlers import Request, validate
from mchat.errors import EMPTY_MESSAGES
from mchat.wire import isoformat_z
from messaging import selectors, services
from messaging.models import Group, GroupMember

# Spec 3.20 words a missing or empty field as "member_ids 不能为空".


def id_field(**options) -> serializers.CharField:
    return serializers.CharField(max_length=64, error_messages=EMPTY_MESSAGES, **options)


def id_list_field(**options) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        error_messages=EMPTY_MESSAGES,
        **options,
    )


class GroupOptions(serializers.Serializer):
    description = serializers.CharField(max_length=500, allow_blank=True, required=False)


class GroupCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, error_messages=EMPTY_MESSAGES)
    member_ids = id_list_field()
    opts = GroupOptions(required=False)


class GroupRef(serializers.Serializer):
    group_id = id_field()


class GroupDismissInput(GroupRef):
    challenge_id = serializers.CharField(max_length=64, required=False)
    token = serializers.CharField(max_length=256, required=False)


class GroupMembersInput(GroupRef):
    member_ids = id_list_field()


class GroupUpdates(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, error_messages=EMPTY_MESSAGES)
    description = serializers.CharField(max_length=500, allow_blank=True, required=False)
    owner_id = id_field(required=False)
    admin_ids = serializers.ListField(child=serializers.CharField(max_length=64), required=False)


class GroupUpdateInput(GroupRef):
    updates = GroupUpdates(error_messages=EMPTY_MESSAGES)


def group_create(request: Request) -> dict:
    fields = validate(GroupCreateInput, request.payload)
    created = services.group_create(
        actor=request.employee,
        name=fields["name"],
        member_ids=fields["member_ids"],
        description=fields.get("opts", {}).get("description", ""),
    )
    group = created.group
    return {
        "group_id": group.group_id,
        "name": group.name,
        "member_ids": created.member_ids,
        "created_at": isoformat_z(group.created_at),
        "owner_id": request.employee.employee_id,
        "description": group.description,
    }


def group_dismiss(request: Request) -> dict:
    fields = validate(GroupDismissInput, request.payload)
    group = services.group_dismiss(
        actor=request.employee,
        group_id=fields["group_id"],
        challenge_id=fields.get("challenge_id"),
        token=fields.get("token"),
    )
    return {"group_id": group.group_id, "dismissed_at": isoformat_z(group.dismissed_at)}


def group_member_add(request: Request) -> dict:
    fields = validate(GroupMembersInput, request.payload)
    change = services.group_member_add(
        actor=request.employee, group_id=fields["group_id"], member_ids=fields["member_ids"]
    )
    return {
        "group_id": change.group.group_id,
        "added_ids": change.employee_ids,
        "current_member_count": change.member_count,
    }


def group_member_remove(request: Request) -> dict:
    fields = validate(GroupMembersInput, request.payload)
    change = services.group_member_remove(
        actor=request.employee, group_id=fields["group_id"], member_ids=fields["member_ids"]
    )
    return {
        "group_id": change.group.group_id,
        "removed_ids": change.employee_ids,
        "current_member_count": change.member_count,
    }


def group_update(request: Request) -> dict:
    fields = validate(GroupUpdateInput, request.payload)
    updated = services.group_update(actor=request.employee, group_id=fields["group_id"], **fields["updates"])
    return {
        "group_id": updated.group.group_id,
        "updated_fields": updated.fields,
        "updated_at": isoformat_z(updated.group.updated_at),
    }


def group_list(request: Request) -> dict:
    return {
        "groups": [
            {**_group_summary(m.group), "role": m.role, "member_count": m.member_count}
            for m in selectors.groups_of(employee=request.employee)
        ]
    }


def group_info(request: Request) -> dict:
    fields = validate(GroupRef, request.payload)
    access = selectors.group_access(actor=request.employee, group_id=fields["group_id"])
    members = selectors.group_memberships(group=access.group)
    return {
        **_group_summary(access.group),
        "role": access.role,
        "member_count": len(members),
        "members": [_member(m) for m in members],
    }


def _group_summary(group: Group) -> dict:
    return {
        "group_id": group.group_id,
        "name": group.name,
        "description": group.description,
        "owner_id": group.owner.employee_id,
        "created_at": isoformat_z(group.created_at),
    }


def _member(membership: GroupMember) -> dict:
    employee = membership.employee
    return {
        "employee_id": employee.employee_id,
        "name": employee.name,
        "role": membership.role,
        "is_ai_agent": employee.is_ai_agent,
        "joined_at": isoformat_z(membership.joined_at),
    }
