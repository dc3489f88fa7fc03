"""System notices in the console: adding one broadcasts it."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.translation import gettext as _

from mchat.db import instance_adopt
from org import services
from org.admin.forms import ServiceErrorsAsFormErrors
from org.models import SystemNotice


class SystemNoticeForm(forms.ModelForm):
    class Meta:
        model = SystemNotice
        fields = ["title", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 6})}


@admin.register(SystemNotice)
class SystemNoticeAdmin(ServiceErrorsAsFormErrors, admin.ModelAdmin):
    """Adding a notice broadcasts it to every employee (mchat/system/notify); sent notices
    are history and cannot be edited."""

    form = SystemNoticeForm
    list_display = ("title", "notify_id", "sent_by", "created_at")
    search_fields = ("title", "text")
    readonly_fields = ("notify_id", "title", "text", "sent_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        saved = services.system_notice_broadcast(
            actor=None,
            title=form.cleaned_data["title"],
            body=form.cleaned_data["text"],
            sent_by=request.user.get_username(),
        )
        instance_adopt(obj, saved)
        self.message_user(request, _("系统通知已发布给全体员工"))
