"""Domain errors and the codes they carry (spec 1.2, DESIGN §4).

Services raise these; the bridge dispatcher and the REST API are the only places that turn
them into responses, so one exception always means one code everywhere.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.utils.translation import gettext_lazy as _

logger = logging.getLogger("mchat.errors")


class MChatError(Exception):
    code = 500
    default_message: Any = _("服务端错误")

    def __init__(self, message: Any = None, *, data: dict | None = None):
        self.message = message if message is not None else self.default_message
        self.data = data
        super().__init__(str(self.message))


class BadRequest(MChatError):
    code = 400
    default_message = _("参数错误")


class Unauthenticated(MChatError):
    code = 401
    default_message = _("未认证")


class PermissionDenied(MChatError):
    code = 403
    default_message = _("无权限执行该操作")


class NotFound(MChatError):
    code = 404
    default_message = _("资源不存在")


class Conflict(MChatError):
    """The target is not in a state that allows this (a stream already ended, a finished task)."""

    code = 409
    default_message = _("状态冲突")


class RateLimited(MChatError):
    code = 429
    default_message = _("请求过于频繁，请稍后再试")

    def __init__(self, *, retry_after_ms: int):
        super().__init__(data={"retry_after_ms": retry_after_ms})


class DeadlineExceeded(MChatError):
    code = 504
    default_message = _("请求超时")


def internal_error_reply(exc: BaseException, *, context: str) -> tuple[str, dict]:
    """Log an unexpected exception with a fresh error id; return the text a client may see."""
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s failed, error_id=%s", context, error_id, exc_info=exc)
    return f"{_('服务端错误')} (error_id={error_id})", {"error_id": error_id}


def drf_exception_handler(exc, context):
    """REST API: same codes and messages as the bridge, in the same envelope."""
    from rest_framework import exceptions as drf
    from rest_framework.response import Response
    from rest_framework.views import exception_handler

    if isinstance(exc, MChatError):
        return Response({"code": exc.code, "message": str(exc.message), "data": exc.data}, status=exc.code)
    response = exception_handler(exc, context)
    if response is None:
        message, data = internal_error_reply(exc, context="REST API request")
        return Response({"code": 500, "message": message, "data": data}, status=500)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        response.status_code = 401
    if isinstance(exc, drf.ValidationError):
        message = validation_message(exc.detail)
    else:
        message = str(getattr(exc, "detail", exc))
    response.data = {"code": response.status_code, "message": message, "data": None}
    return response


# DRF error_messages for a field that must be given and not empty: one text for every way
# of being empty, so the answer is "<field> 不能为空" whatever the client sent.
EMPTY_MESSAGES = {
    "required": _("不能为空"),
    "null": _("不能为空"),
    "blank": _("不能为空"),
    "empty": _("不能为空"),
}


def validation_message(detail: Any, field: str | None = None) -> str:
    """First error of a DRF validation result, prefixed by the field it is about."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            return validation_message(value, f"{field}.{name}" if field and name else name or field)
    if isinstance(detail, list) and detail:
        return validation_message(detail[0], field)
    return f"{field} {detail}" if field else str(detail)
