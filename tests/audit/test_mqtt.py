"""audit.list over MQTT: org admins only, filters, newest first, cursor pages, 400 naming the field."""

from __future__ import annotations

import pytest

from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(db):
    return EmployeeFactory(employee_id="emp_admin_001", is_org_admin=True)


def test_non_admin_gets_403(call, events):
    response = call(EmployeeFactory(), "audit.list")
    assert response["code"] == 403
    assert response["data"] is None


def test_non_admin_gets_403_before_any_validation(call, events):
    assert call(EmployeeFactory(), "audit.list", filters={"since": "nonsense"})["code"] == 403


def test_pages_newest_first(call, admin, events):
    first = call(admin, "audit.list", limit=2)
    assert first["code"] == 0
    assert [e["id"] for e in first["data"]["events"]] == [str(events[3].pk), str(events[2].pk)]
    rest = call(admin, "audit.list", limit=2, cursor=first["data"]["next_cursor"])["data"]
    assert [e["id"] for e in rest["events"]] == [str(events[1].pk), str(events[0].pk)]
    assert rest["next_cursor"] is None
    event = first["data"]["events"][0]
    assert set(event) >= {
        "occurred_at",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "changes",
        "source",
    }


def test_filters(call, admin, events):
    data = call(admin, "audit.list", filters={"source": "console", "target_id": "grp_1"})["data"]
    assert [e["id"] for e in data["events"]] == [str(events[2].pk)]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"filters": {"since": "last week"}}, "filters.since"),
        ({"filters": {"source": "fax"}}, "filters.source"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
        ({"filters": ["x"]}, "filters"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
    ],
)
def test_bad_input_is_400_naming_the_field(call, admin, events, fields, field):
    response = call(admin, "audit.list", **fields)
    assert response["code"] == 400
    assert response["message"].startswith(field)
