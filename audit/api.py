"""REST: GET /api/v1/audit-events/ for compliance export (org admins of the REST API).

JSON pages (`limit`, `cursor`, newest first) or the whole selection streamed as CSV
(`?format=csv`) or JSON lines (`?format=jsonl`): rows are fetched in chunks and written as
they come, so memory stays bounded whatever the count.

Who: a staff user holding `audit.view_auditevent` (superusers hold every permission); anyone
else authenticated gets 403, anonymous 401.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, renderers, serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.models import AuditEvent
from mchat.errors import BadRequest

EXPORT_FORMATS = ("json", "csv", "jsonl")


class CanReadAuditLog(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_staff and user.has_perm("audit.view_auditevent")
        )


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, ensure_ascii=False).encode()  # errors only; rows are streamed


class JSONLinesRenderer(CSVRenderer):
    media_type = "application/jsonl"
    format = "jsonl"


class FormatNegotiation(BaseContentNegotiation):
    """`?format=json|csv|jsonl` (default json). Anything else falls back to JSON here and is
    refused by the view (400 naming `format`) once authentication and permissions passed."""

    def select_renderer(self, request, renderers_, format_suffix=None):
        wanted = request.query_params.get("format") or "json"
        for renderer in renderers_:
            if renderer.format == wanted:
                return renderer, renderer.media_type
        return renderers_[0], renderers_[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class AuditEventOutput(serializers.Serializer):
    id = serializers.CharField()
    occurred_at = serializers.CharField(help_text="UTC, 2025-02-03T10:00:00.000Z")
    actor_type = serializers.ChoiceField(choices=["employee", "user", "system"])
    actor_id = serializers.CharField()
    actor_display = serializers.CharField()
    action = serializers.CharField(help_text="the service's name, e.g. employee_update")
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    target_display = serializers.CharField()
    changes = serializers.JSONField(help_text='{"field": {"before": x, "after": y}}; secrets: "changed"')
    source = serializers.ChoiceField(choices=AuditEvent.Source.values)
    client_id = serializers.CharField()
    source_user = serializers.CharField()
    address = serializers.CharField()
    seq_id = serializers.CharField()


class AuditPageOutput(serializers.Serializer):
    events = AuditEventOutput(many=True)
    next_cursor = serializers.CharField(allow_null=True)


_FILTER_PARAMETERS = [
    OpenApiParameter("actor", OpenApiTypes.STR, description="actor id (employee_id or user name)"),
    OpenApiParameter("actor_type", OpenApiTypes.STR, enum=["employee", "user", "system"]),
    OpenApiParameter("action", OpenApiTypes.STR, description="e.g. employee_update"),
    OpenApiParameter("target_type", OpenApiTypes.STR, description="employee, department, group, message..."),
    OpenApiParameter("target_id", OpenApiTypes.STR),
    OpenApiParameter("source", OpenApiTypes.STR, enum=AuditEvent.Source.values),
    OpenApiParameter("since", OpenApiTypes.STR, description="ISO 8601 datetime or YYYY-MM-DD, inclusive"),
    OpenApiParameter(
        "until", OpenApiTypes.STR, description="ISO 8601 datetime (exclusive) or YYYY-MM-DD (whole day)"
    ),
    OpenApiParameter("q", OpenApiTypes.STR, description="search in actor, target, action, client, user"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="next_cursor of the previous page (json only)"),
    OpenApiParameter("limit", OpenApiTypes.INT, description="rows per page, 1-500, default 50 (json only)"),
    OpenApiParameter(
        "format",
        OpenApiTypes.STR,
        enum=["json", "csv", "jsonl"],
        description="csv / jsonl: every matching row, streamed (no paging)",
    ),
]


class AuditEventListView(APIView):
    permission_classes = [CanReadAuditLog]
    renderer_classes = [renderers.JSONRenderer, CSVRenderer, JSONLinesRenderer]
    content_negotiation_class = FormatNegotiation

    @extend_schema(
        summary="审计日志（查询与合规导出）",
        parameters=_FILTER_PARAMETERS,
        responses={
            200: OpenApiResponse(
                AuditPageOutput,
                description="json: one page; csv (text/csv) / jsonl (application/jsonl): all rows, streamed",
            ),
            400: OpenApiResponse(description="a filter's value is invalid; message names it"),
            403: OpenApiResponse(description="not allowed to read the audit log"),
        },
    )
    def get(self, request: Request):
        params = request.query_params
        filters = {name: params[name] for name in selectors.FILTERS if name in params}
        unknown = sorted(set(params) - {*selectors.FILTERS, "cursor", "limit", "format"})
        if unknown:
            raise BadRequest(_("%(field)s 不是可用的筛选条件") % {"field": unknown[0]})
        kind = params.get("format") or "json"
        if kind not in EXPORT_FORMATS:
            raise BadRequest(_("format 必须是以下之一：json, csv, jsonl"))
        if kind == "json":
            page = selectors.audit_page(
                filters=filters, cursor=params.get("cursor"), limit=params.get("limit")
            )
            return Response(
                {"events": [selectors.event_fields(e) for e in page.events], "next_cursor": page.next_cursor}
            )
        rows = selectors.export_rows(selectors.audit_events(filters=filters))
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        if kind == "csv":
            response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
        else:
            response = StreamingHttpResponse(
                json_lines(rows), content_type="application/jsonl; charset=utf-8"
            )
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{kind}"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and getattr(request, "accepted_renderer", None) is not None:
            if request.accepted_renderer.format != "json":
                # Errors of an export are JSON like every other error of the API.
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


# Rows written per chunk of the response: few enough to stay small, enough that the
# per-chunk cost of the WSGI server does not dominate.
ROWS_PER_CHUNK = 200


def csv_lines(rows: Iterator[list]) -> Iterator[bytes]:
    """A header, then the rows (changes as JSON text), ROWS_PER_CHUNK at a time, each chunk
    encoded as it is written. A UTF-8 BOM first, so spreadsheet programs read Chinese right."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(selectors.EXPORT_FIELDS)
    yield ("\ufeff" + buffer.getvalue()).encode()
    for chunk in _chunks(rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_cell(value) for value in row] for row in chunk)
        yield buffer.getvalue().encode()


def _cell(value) -> str:
    """Text a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in _FORMULA_STARTS else text


_FORMULA_STARTS = frozenset(("=", "+", "-", "@", "\t", "\r"))


def json_lines(rows: Iterator[list]) -> Iterator[bytes]:
    changes_at = selectors.EXPORT_FIELDS.index("changes")
    names = [json.dumps(name) for name in selectors.EXPORT_FIELDS]
    for chunk in _chunks(rows):
        lines = []
        for row in chunk:
            parts = [
                f"{name}:{value if i == changes_at else json.dumps(value, ensure_ascii=False)}"
                for i, (name, value) in enumerate(zip(names, row, strict=True))
            ]
            lines.append("{" + ",".join(parts) + "}\n")
        yield "".join(lines).encode()


def _chunks(rows: Iterator[list]) -> Iterator[list[list]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == ROWS_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
