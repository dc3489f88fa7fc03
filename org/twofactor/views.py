"""Enrolment (first sign-in: secret, otpauth URI, QR code; then recovery codes shown once)
and the code step at every sign-in. Both need a signed-in console user."""

from __future__ import annotations

import logging
from base64 import b32encode

import qrcode
import qrcode.image.svg
from axes.helpers import get_client_ip_address
from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from org import signin_audit
from org.twofactor import console_2fa_mode, has_authenticator

# The two-factor events go to the audit log (org.signin_audit) and to this log.
log = logging.getLogger("mchat.signin")

RECOVERY_CODES = 10
AUTHENTICATOR_NAME = "控制台验证器"
RECOVERY_DEVICE_NAME = "恢复码"


class CodeForm(forms.Form):
    code = forms.CharField(
        label=gettext_lazy("验证码"),
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True}),
    )


def _next_url(request) -> str:
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("admin:index")


def _record(request, event: str, level: int = logging.INFO, *, action: str, **changes) -> None:
    signin_audit.console_2fa(action, request=request, **changes)
    log.log(
        level,
        "console 2fa %s: user=%s address=%s agent=%r",
        event,
        request.user.get_username(),
        get_client_ip_address(request),
        request.headers.get("user-agent", ""),
    )


def _qr_svg(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=16)
    return image.to_string(encoding="unicode")


def _recovery_codes_issue(user) -> list[str]:
    """A fresh set of one-time recovery codes; the previous set stops working."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name=RECOVERY_DEVICE_NAME)
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    device.token_set.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


@never_cache
@staff_member_required
def enrol(request):
    if console_2fa_mode() == "off":
        return redirect("admin:index")
    user = request.user
    if has_authenticator(user) and not user.is_verified():
        # Enrolling a second authenticator needs the first one's code.
        return redirect(f"{reverse('console-2fa-verify')}?{request.GET.urlencode()}")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").last()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if device.verify_token(form.cleaned_data["code"].strip()):
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
                codes = _recovery_codes_issue(user)
                otp_login(request, device)
                _record(request, "enrolled", action="console_2fa_enrol", recovery_codes=RECOVERY_CODES)
                return render(
                    request,
                    "org/twofactor/recovery_codes.html",
                    {"title": _("保存恢复码"), "codes": codes, "next": _next_url(request)},
                )
        _record(
            request, "enrolment code refused", logging.WARNING, action="console_2fa_refused", step="enrol"
        )
        form.add_error("code", _("验证码不正确，请确认手机时间准确后重试"))
    secret = b32encode(device.bin_key).decode()
    context = {
        "title": _("设置两步验证"),
        "form": form,
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "otpauth_uri": device.config_url,
        "qr_svg": _qr_svg(device.config_url),
        "next": _next_url(request),
    }
    return render(request, "org/twofactor/enrol.html", context)


@never_cache
@staff_member_required
def verify(request):
    user = request.user
    if user.is_verified() or console_2fa_mode() == "off":
        return redirect(_next_url(request))
    if not has_authenticator(user):
        return redirect(f"{reverse('console-2fa-enrol')}?{request.GET.urlencode()}")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["code"].strip().replace(" ", ""))
        if device is not None:
            otp_login(request, device)
            recovery = device.name == RECOVERY_DEVICE_NAME
            _record(
                request,
                "recovery code used" if recovery else "verified",
                action="console_2fa_verify",
                method="recovery_code" if recovery else "totp",
            )
            return redirect(_next_url(request))
        _record(request, "code refused", logging.WARNING, action="console_2fa_refused", step="verify")
        form.add_error("code", _("验证码无效或已使用过；连续输错后需稍等几秒再试"))
    return render(
        request,
        "org/twofactor/verify.html",
        {"title": _("两步验证"), "form": form, "next": _next_url(request)},
    )
