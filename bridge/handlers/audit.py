"""audit.list (ours, docs/protocol.md "Audit log"): org admins page through the audit log."""

from __future__ import annotations

from rest_framework import serializers

from audit import selectors
from bridge.handlers import Request, validate
from mchat.errors import PermissionDenied


class AuditListInput(serializers.Serializer):
    filters = serializers.DictField(required=False)
    cursor = serializers.CharField(max_length=20, required=False, allow_blank=True)
    limit = serializers.IntegerField(min_value=1, max_value=selectors.MAX_LIMIT, required=False)


def audit_list(request: Request) -> dict:
    if not request.employee.is_org_admin:
        raise PermissionDenied()
    fields = validate(AuditListInput, request.payload)
    page = selectors.audit_page(
        filters=fields.get("filters") or {},
        cursor=fields.get("cursor"),
        limit=fields.get("limit"),
        prefix="filters.",
    )
    return {"events": [selectors.event_fields(e) for e in page.events], "next_cursor": page.next_cursor}
