"""Chinese names for the sign-in libraries' console sections (django-axes, django-otp), which
ship no Chinese: set on their app configs and models' options at start-up (OrgConfig.ready).

Display only: the models' Meta (what migrations compare) is untouched, so no migration follows.
"""

from __future__ import annotations

from django.apps import apps
from django.utils.translation import gettext_lazy as _

APPS = {
    "axes": _("登录锁定"),
    "otp_totp": _("两步验证：验证器"),
    "otp_static": _("两步验证：恢复码"),
}
MODELS = {
    ("axes", "AccessAttempt"): (_("访问尝试"), _("访问尝试")),
    ("axes", "AccessFailureLog"): (_("访问失败日志"), _("访问失败日志")),
    ("axes", "AccessLog"): (_("访问日志"), _("访问日志")),
    ("axes", "AccessAttemptExpiration"): (_("访问尝试过期时间"), _("访问尝试过期时间")),
    ("otp_totp", "TOTPDevice"): (_("TOTP 验证器"), _("TOTP 验证器")),
    ("otp_static", "StaticDevice"): (_("恢复码组"), _("恢复码组")),
    ("otp_static", "StaticToken"): (_("恢复码"), _("恢复码")),
}


def label_sign_in_apps() -> None:
    for label, name in APPS.items():
        if label in apps.app_configs:
            apps.app_configs[label].verbose_name = name
    for (label, model_name), (singular, plural) in MODELS.items():
        try:
            model = apps.get_model(label, model_name)
        except LookupError:
            continue
        model._meta.verbose_name = singular
        model._meta.verbose_name_plural = plural
