"""The console's unlock action: Axes' own "access attempts" list gets "解除登录锁定", which
forgets the selected rows' accounts and addresses (org.lockout.signin_lockout_reset)."""

from __future__ import annotations

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from org.lockout import signin_lockout_reset


class SigninLockoutAdmin(AccessAttemptAdmin):
    actions = [*AccessAttemptAdmin.actions, "unlock"]

    @admin.action(description=gettext_lazy("解除登录锁定（所选账号和地址）"), permissions=["delete"])
    def unlock(self, request, queryset):
        pairs = set(queryset.values_list("username", "ip_address"))
        removed = 0
        for username, address in pairs:
            removed += signin_lockout_reset(username=username, ip_address=address)
        self.message_user(
            request,
            _("已解除 %(count)d 个登录锁定记录的锁定。") % {"count": removed},
            messages.SUCCESS,
        )


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, SigninLockoutAdmin)
