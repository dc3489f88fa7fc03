"""Admin console for groups and messages: read-mostly; every write goes through services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from mchat.errors import MChatError
from messaging import services
from messaging.models import Conversation, Group, GroupMember, Message


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class GroupMemberInline(ReadOnlyMixin, admin.TabularInline):
    model = GroupMember
    fields = ("employee", "role", "joined_at")
    readonly_fields = fields
    extra = 0
    ordering = ("role", "joined_at")


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ("group_id", "name", "owner", "member_count", "created_at", "dismissed_at")
    list_filter = ("dismissed_at",)
    search_fields = ("group_id", "name", "owner__employee_id", "owner__name")
    fields = ("group_id", "name", "description", "owner", "created_at", "updated_at", "dismissed_at")
    readonly_fields = ("group_id", "owner", "created_at", "updated_at", "dismissed_at")
    inlines = [GroupMemberInline]
    actions = ["dismiss_groups"]

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("owner").annotate(_member_count=Count("memberships"))
        )

    @admin.display(description=_("成员数"), ordering="_member_count")
    def member_count(self, group: Group) -> int:
        return group._member_count

    def has_add_permission(self, request) -> bool:
        return False  # groups are created by their owners, over MQTT

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # dismiss instead: history stays, members are told

    def save_model(self, request, obj: Group, form, change: bool) -> None:
        try:
            services.group_update(
                actor=None,
                group_id=obj.group_id,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
        except MChatError as exc:
            self.message_user(request, str(exc.message), messages.ERROR)

    @admin.action(description=_("解散所选群组"), permissions=["change"])
    def dismiss_groups(self, request, queryset) -> None:
        dismissed = 0
        for group in queryset.filter(dismissed_at__isnull=True):
            services.group_dismiss(actor=None, group_id=group.group_id)
            dismissed += 1
        self.message_user(request, _("已解散 %(n)d 个群组") % {"n": dismissed})


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("pk", "kind", "group", "employee_low", "employee_high", "last_seq", "last_activity_at")
    list_filter = ("kind",)
    search_fields = ("group__group_id", "employee_low__employee_id", "employee_high__employee_id")
    list_select_related = ("group", "employee_low", "employee_high")


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("msg_id", "conversation", "seq", "sender", "content_type", "sent_at", "recalled_at")
    list_filter = ("content_type", "conversation__kind")
    search_fields = ("msg_id", "sender__employee_id", "sender__name")
    list_select_related = ("conversation", "conversation__group", "sender")
    date_hierarchy = "sent_at"
    actions = ["recall_messages"]

    def has_recall_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_message")

    @admin.action(description=_("撤回所选消息"), permissions=["recall"])
    def recall_messages(self, request, queryset) -> None:
        for message in queryset.filter(recalled_at__isnull=True):
            services.message_recall(actor=None, msg_id=message.msg_id)
        self.message_user(request, _("已撤回所选消息"))
