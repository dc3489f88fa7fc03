"""GET /api/v1/audit-events/: who may, filters, cursor pages, CSV / JSON lines streamed in
bounded memory, the OpenAPI schema."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tests.audit.conftest import token_client

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-events/"


def test_anonymous_401_no_permission_403_permitted_200(events):
    assert APIClient().get(URL).status_code == 401
    refused = token_client(can_read=False).get(URL)
    assert refused.status_code == 403
    assert refused.json()["code"] == 403
    assert token_client(staff=False).get(URL).status_code == 403
    assert token_client(can_read=False).get(URL, {"format": "csv"}).status_code == 403
    assert token_client().get(URL).status_code == 200


def test_newest_first_and_cursor_pages(events):
    client = token_client()
    first = client.get(URL, {"limit": 3}).json()
    assert [e["id"] for e in first["events"]] == [str(e.pk) for e in reversed(events)][:3]
    assert first["next_cursor"] == str(events[1].pk)
    second = client.get(URL, {"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in second["events"]] == [str(events[0].pk)]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "group_dismiss"}, [2]),
        ({"source": "rest"}, [1]),
        ({"actor": "hr-lee"}, [2]),
        ({"actor_type": "user"}, [2]),
        ({"target_type": "group", "target_id": "grp_1"}, [2, 0]),
        ({"q": "credential"}, [3]),
    ],
)
def test_filters(events, params, expected):
    body = token_client().get(URL, params).json()
    assert [e["id"] for e in body["events"]] == [str(events[i].pk) for i in expected]


def test_time_filters(events):
    client = token_client()
    since = (timezone.now() - timedelta(days=1, hours=1)).isoformat()
    assert len(client.get(URL, {"since": since}).json()["events"]) == 2
    day = (timezone.localtime() - timedelta(days=3)).date().isoformat()
    until = client.get(URL, {"until": day}).json()["events"]
    assert [e["id"] for e in until] == [str(events[0].pk)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01"}, "until"),
        ({"source": "pigeon"}, "source"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"cursor": "x1"}, "cursor"),
        ({"colour": "red"}, "colour"),
        ({"format": "xml"}, "format"),
        ({"actor": "a b"}, "actor"),
    ],
)
def test_bad_filters_are_400_naming_the_field(events, params, field):
    response = token_client().get(URL, params)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["message"].startswith(field)


def test_csv_export_is_streamed_with_every_matching_row(events):
    response = token_client().get(URL, {"format": "csv", "source": "mqtt"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [str(events[3].pk), str(events[0].pk)]
    assert json.loads(rows[0]["changes"]) == {"mqtt_password_hash": "changed"}
    assert rows[0]["occurred_at"].endswith("Z")


def test_json_lines_export(events):
    response = token_client().get(URL, {"format": "jsonl"})
    assert response.streaming
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(e.pk) for e in reversed(events)]


def test_csv_cells_never_start_a_formula(db):
    from tests.audit.conftest import make_event

    make_event(target_display='=HYPERLINK("http://evil")')
    text = b"".join(token_client().get(URL, {"format": "csv"}).streaming_content).decode("utf-8-sig")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["target_display"].startswith("'=")


def _insert_many(total: int) -> None:
    """`total` rows in one statement (the ORM would take most of the test's time)."""
    quote = connection.ops.quote_name
    changes = json.dumps({"members": {"before": None, "after": ["emp_bob_001", "emp_carol_002"]}})
    as_json = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
        f"INSERT INTO {quote(AuditEvent._meta.db_table)} (occurred_at, actor_type, actor_id, actor_display, "
        "action, target_type, target_id, target_display, changes, source, client_id, source_user, address, seq_id) "
        f"SELECT %s, 'employee', 'emp_admin_001', '管理员', 'group_member_add', 'group', "
        f"'grp_0193a4f1c2d85f3e9a1b7c4d', '销售一组', {as_json}, 'mqtt', 'emp_admin_001_device1', '', "
        "'', '550e8400-e29b-41d4-a716-446655440000' FROM n"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [total, timezone.now(), changes])


@pytest.mark.timeout(300)  # tracemalloc slows every allocation; the machine is shared
def test_csv_export_of_100000_rows_streams_in_bounded_memory(db):
    total = 100_000
    _insert_many(total)
    assert AuditEvent.objects.count() == total
    response = token_client().get(URL, {"format": "csv"})
    assert response.streaming
    lines = size = 0
    tracemalloc.start()
    try:
        for chunk in response.streaming_content:
            lines += chunk.count(b"\n")
            size += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == total + 1  # the header and every row
    # The export is over ten megabytes; reading it never holds more than a few chunks of it.
    assert size > 10 * 1024 * 1024
    assert peak < size / 5


def test_openapi_schema_documents_the_endpoint(admin_client):
    schema = admin_client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/audit-events/"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {
        "actor",
        "action",
        "target_type",
        "target_id",
        "source",
        "since",
        "until",
        "cursor",
        "format",
    } <= names
