"""The employee's own sign-ins ("登录设备" in the web client): list them, end any.

    GET  /api/web/sessions               {"sessions": [...]}, the current one first
    POST /api/web/sessions/{id}/end      (X-CSRFToken) ends it: tokens refused, MQTT connections
                                         closed, that browser signed out; {"ended": id,
                                         "signed_out": true} when it was this browser's own

Part of the sign-in's HTTP surface (docs/protocol.md §11), like the credential endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib.auth import logout
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from org import web_auth, web_sessions
from org.models import WebSession
from org.views_web import _current, _json_error


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def session_json(session: WebSession, *, current_pk: int) -> dict:
    return {
        "id": str(session.pk),
        "current": session.pk == current_pk,
        "device": web_sessions.device_label(session.user_agent),
        "user_agent": session.user_agent,
        "address": session.address,
        "method": session.method,
        "started_at": _time(session.created_at),
        "last_seen_at": _time(session.last_seen_at or session.created_at),
    }


@never_cache
@require_GET
def sessions_list(request: HttpRequest) -> JsonResponse:
    current = _current(request)
    if current is None:
        return _json_error(401, _("未登录或登录已失效，请重新登录"))
    employee, session = current
    rows = sorted(
        web_sessions.web_sessions_active(employee=employee), key=lambda s: s.pk != session.pk
    )  # the current one first, then the most recently active
    return JsonResponse(
        {"sessions": [session_json(s, current_pk=session.pk) for s in rows]},
        json_dumps_params={"ensure_ascii": False},
    )


@never_cache
@require_POST
def session_end(request: HttpRequest, session_id: int) -> JsonResponse:
    current = _current(request)
    if current is None:
        return _json_error(401, _("未登录或登录已失效，请重新登录"))
    employee, session = current
    ended = web_auth.web_session_end_for(
        request=request, employee=employee, session_pk=session_id, by=employee
    )
    if ended is None:
        return _json_error(404, _("该登录设备不存在或已退出"))
    own = ended.pk == session.pk
    if own:
        logout(request)
    return JsonResponse({"ended": str(ended.pk), "signed_out": own})
