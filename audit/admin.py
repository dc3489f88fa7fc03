"""Console: the audit log read-only for everyone; legal holds and per-group retention.

REST tokens keep DRF's own console page: their creation and revocation are audited by
audit.receivers, whatever the path."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from audit import services
from audit.models import AuditEvent, GroupRetention, LegalHold
from mchat.errors import MChatError


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "action", "actor_label", "target_label", "source", "client_id", "address")
    list_filter = ("action", "source", "actor_type", "target_type", "occurred_at")
    search_fields = (
        "actor_id",
        "actor_display",
        "action",
        "target_id",
        "target_display",
        "client_id",
        "source_user",
        "seq_id",
    )
    date_hierarchy = "occurred_at"
    ordering = ("-id",)
    show_full_result_count = False  # a count of a large log costs a scan per page
    fields = (
        "occurred_at",
        "action",
        "actor_type",
        "actor_id",
        "actor_display",
        "target_type",
        "target_id",
        "target_display",
        "changes_text",
        "source",
        "client_id",
        "source_user",
        "address",
        "seq_id",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("操作者"), ordering="actor_id")
    def actor_label(self, event: AuditEvent) -> str:
        if event.actor_type == AuditEvent.ActorType.SYSTEM:
            return str(_("系统"))
        return (
            f"{event.actor_display} ({event.actor_id})"
            if event.actor_display != event.actor_id
            else event.actor_id
        )

    @admin.display(description=_("对象"), ordering="target_id")
    def target_label(self, event: AuditEvent) -> str:
        return f"{event.target_type}:{event.target_id}"

    @admin.display(description=_("变更"))
    def changes_text(self, event: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.changes, ensure_ascii=False, indent=2))


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    list_display = ("__str__", "employee", "group", "reason", "placed_by", "placed_at", "released_at")
    list_filter = ("released_at",)
    search_fields = ("employee__employee_id", "employee__name", "group__group_id", "group__name", "reason")
    raw_id_fields = ("employee", "group")
    readonly_fields = ("placed_by", "placed_at", "released_at", "released_by")
    actions = ["release_holds"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a hold is placed and released, never edited
            return ("employee", "group", "reason", *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # released, not deleted: the record of the hold stays

    def save_model(self, request, obj: LegalHold, form, change: bool) -> None:
        if change:
            return
        try:
            hold = services.legal_hold_place(
                employee=form.cleaned_data.get("employee"),
                group=form.cleaned_data.get("group"),
                reason=form.cleaned_data.get("reason", ""),
                placed_by=request.user.get_username(),
            )
        except MChatError as exc:
            self.message_user(request, str(exc.message), messages.ERROR)
            return
        obj.pk = hold.pk

    @admin.action(description=_("解除所选法律保留"), permissions=["change"])
    def release_holds(self, request, queryset) -> None:
        released = 0
        for hold in queryset.filter(released_at__isnull=True).select_related("employee", "group"):
            services.legal_hold_release(hold=hold, released_by=request.user.get_username())
            released += 1
        self.message_user(request, _("已解除 %(n)d 项法律保留") % {"n": released})


@admin.register(GroupRetention)
class GroupRetentionAdmin(admin.ModelAdmin):
    list_display = ("group", "keep_days", "updated_at")
    search_fields = ("group__group_id", "group__name")
    raw_id_fields = ("group",)

    def get_readonly_fields(self, request, obj=None):
        return ("group",) if obj is not None else ()

    def save_model(self, request, obj: GroupRetention, form, change: bool) -> None:
        services.group_retention_set(group=obj.group, keep_days=form.cleaned_data.get("keep_days"))
        obj.pk = GroupRetention.objects.get(group=obj.group).pk

    def delete_model(self, request, obj: GroupRetention) -> None:
        services.group_retention_set(group=obj.group, keep_days=None, inherit=True)

    def delete_queryset(self, request, queryset) -> None:
        for retention in queryset.select_related("group"):
            services.group_retention_set(group=retention.group, keep_days=None, inherit=True)
