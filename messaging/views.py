"""HTTP side of the local storage backend: PUT and GET through signed single-use URLs.

No session or CSRF token: the URL itself is the credential (messaging.storage.local). Errors
use the same envelope and codes as the REST API: {"code", "message", "data"}.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mchat.errors import MChatError
from mchat.wire import isoformat_z
from messaging import files


@csrf_exempt
@require_http_methods(["GET", "PUT"])
def file_object(request: HttpRequest, key: str) -> HttpResponse:
    token = request.GET.get("token", "")
    try:
        if request.method == "PUT":
            stored = files.local_upload_receive(
                key=key,
                token=token,
                content_type=request.headers.get("Content-Type", ""),
                content_length=request.headers.get("Content-Length"),
                read=request.read,
            )
            return JsonResponse(
                {
                    "code": 0,
                    "message": "ok",
                    "data": {
                        "key": stored.key,
                        "size": stored.size,
                        "content_type": stored.content_type,
                        "uploaded_at": isoformat_z(stored.uploaded_at),
                    },
                },
                json_dumps_params={"ensure_ascii": False},
            )
        stored, handle = files.local_download_open(key=key, token=token)
    except MChatError as exc:
        return JsonResponse(
            {"code": exc.code, "message": str(exc.message), "data": exc.data},
            status=exc.code,
            json_dumps_params={"ensure_ascii": False},
        )
    response = FileResponse(
        handle, as_attachment=True, filename=stored.name, content_type=stored.content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
