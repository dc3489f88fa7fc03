"""The console's list of web sign-ins (网页会话): HR sees each employee's browsers (device,
address, method, started, last seen) and ends any. Ending one refuses its MQTT tokens, closes
its connections and signs that browser out (org.web_auth.web_session_end_for); it is audited
with the console user as actor. Rows are written by sign-ins only: no add, change or delete."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from org import web_auth, web_sessions
from org.models import WebSession


class ActiveFilter(admin.SimpleListFilter):
    title = gettext_lazy("状态")
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", _("登录中")), ("no", _("已结束"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(ended_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(ended_at__isnull=False)
        return queryset


@admin.register(WebSession)
class WebSessionAdmin(admin.ModelAdmin):
    list_display = (
        "employee",
        "device",
        "address",
        "method",
        "created_at",
        "last_seen_at",
        "ended_at",
        "end_reason",
    )
    list_filter = (ActiveFilter, "method")
    search_fields = ("employee__employee_id", "employee__name", "address")
    list_select_related = ("employee",)
    ordering = ("-created_at",)
    fields = (
        "employee",
        "device",
        "user_agent",
        "address",
        "method",
        "created_at",
        "last_seen_at",
        "ended_at",
        "end_reason",
    )
    readonly_fields = fields
    actions = ["end_sessions"]

    @admin.display(description=gettext_lazy("设备"))
    def device(self, obj: WebSession) -> str:
        return web_sessions.device_label(obj.user_agent) or "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # an ended session must stay until its tokens expire (web-revoked)

    def has_end_permission(self, request) -> bool:
        return request.user.has_perm("org.change_websession")

    @admin.action(description=gettext_lazy("结束所选登录（断开其网页 MQTT 连接）"), permissions=["end"])
    def end_sessions(self, request, queryset):
        ended = 0
        for session in queryset.filter(ended_at__isnull=True).select_related("employee"):
            if web_auth.web_session_end_for(
                request=request, employee=session.employee, session_pk=session.pk, by=None
            ):
                ended += 1
        self.message_user(request, _("已结束 %(count)d 个网页登录。") % {"count": ended}, messages.SUCCESS)
