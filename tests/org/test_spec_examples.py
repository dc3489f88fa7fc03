"""The interface document's own examples (spec 3.3-3.6, 3.18) run as written and answer in
the documented shape: every documented key present with the documented JSON type (extra keys
such as org.tree's `version` are allowed)."""

from __future__ import annotations

import json

import pytest

from mchat.wire import encode
from org import services
from tests.factories import EmployeeFactory
from tests.org.conftest import make_department

pytestmark = pytest.mark.django_db

SPEC_3_3_REQUEST = """{
  "action": "employee.create",
  "seq_id": "550e8400-e29b-41d4-a716-446655440000",
  "name": "张三",
  "is_ai_agent": false,
  "department_id": "dept_sales",
  "manager_id": "mgr_001"
}"""
SPEC_3_3_RESPONSE = """{
  "seq_id": "550e8400-e29b-41d4-a716-446655440000",
  "code": 0,
  "message": "ok",
  "data": {
    "employee_id": "emp_zhangsan_001",
    "name": "张三",
    "created_at": "2025-02-03T10:00:00.000Z",
    "mqtt_connection": {
      "broker_host": "broker.example.com",
      "broker_port": 8883,
      "use_tls": true,
      "mqtt_username": "emp_zhangsan_001",
      "mqtt_password": "***"
    }
  }
}"""
SPEC_3_4_REQUEST = """{
  "action": "employee.update",
  "seq_id": "dd0e8400-e29b-41d4-a716-446655440008",
  "employee_id": "emp_zhangsan_001",
  "updates": {
    "name": "张三（销售）",
    "department_id": "dept_sales",
    "manager_id": "mgr_002"
  }
}"""
SPEC_3_4_RESPONSE = """{
  "seq_id": "dd0e8400-e29b-41d4-a716-446655440008",
  "code": 0,
  "message": "ok",
  "data": {
    "employee_id": "emp_zhangsan_001",
    "updated_at": "2025-02-03T10:20:00.000Z"
  }
}"""
SPEC_3_5_REQUEST = """{
  "action": "org.tree",
  "seq_id": "990e8400-e29b-41d4-a716-446655440004"
}"""
SPEC_3_5_RESPONSE = """{
  "seq_id": "990e8400-e29b-41d4-a716-446655440004",
  "code": 0,
  "message": "ok",
  "data": {
    "departments": [
      { "department_id": "dept_sales", "name": "销售部", "parent_id": null, "sort_order": 1 },
      { "department_id": "dept_tech", "name": "技术部", "parent_id": null, "sort_order": 2 }
    ],
    "employees": [
      { "employee_id": "emp_zhangsan_001", "name": "张三", "department_id": "dept_sales", "manager_id": "mgr_001", "is_ai_agent": false },
      { "employee_id": "ai_sales_001", "name": "销售小助", "department_id": "dept_sales", "is_ai_agent": true }
    ]
  }
}"""
SPEC_3_6_CREATE = """{
  "action": "department.create",
  "seq_id": "dept_seq_001",
  "name": "华东区",
  "parent_id": "dept_sales",
  "sort_order": 1
}"""
SPEC_3_6_UPDATE = """{
  "action": "department.update",
  "seq_id": "dept_seq_002",
  "department_id": "dept_east",
  "updates": { "name": "华东销售区", "parent_id": "dept_sales", "sort_order": 2 }
}"""
SPEC_3_6_DELETE = """{
  "action": "department.delete",
  "seq_id": "dept_seq_003",
  "department_id": "dept_east"
}"""
SPEC_3_18_PROFILE = """{
  "employee_id": "emp_zhangsan_001",
  "event": "updated",
  "fields": ["name", "department_id"],
  "profile": {
    "name": "张三（销售）",
    "department_id": "dept_sales",
    "is_ai_agent": false,
    "skills_badge": []
  },
  "updated_at": "2025-02-03T10:20:00.000Z"
}"""
GENERIC_RESPONSE = {"seq_id": "x", "code": 0, "message": "ok", "data": {}}


def assert_shape(actual, documented, path="$"):
    """Every documented key is present with the same JSON type; lists: each item against the
    documented items' union of keys (optional keys may be null)."""
    if documented is None:
        return
    if isinstance(documented, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in documented.items():
            assert key in actual, f"{path}.{key} missing from {sorted(actual)}"
            assert_shape(actual[key], value, f"{path}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list), f"{path}: not a list"
        if documented and isinstance(documented[0], dict):
            union: dict = {}
            for item in documented:
                union.update({k: v for k, v in item.items() if k not in union or union[k] is None})
            for i, item in enumerate(actual):
                assert_shape(item, union, f"{path}[{i}]")
        else:
            for i, item in enumerate(actual):
                assert_shape(item, documented[0] if documented else None, f"{path}[{i}]")
    elif actual is not None:
        assert type(actual) is type(documented), f"{path}: {actual!r} vs documented {documented!r}"
        if path.endswith(("_at", "created_at")):
            assert actual.endswith("Z") and len(actual) == len(documented), f"{path}: {actual!r}"


def _send(call, employee, example: str, **extra):
    payload = json.loads(example)
    payload.update(extra)
    return call(employee, raw=encode(payload), seq_id=payload["seq_id"])


@pytest.fixture
def spec_org(db):
    make_department("dept_sales", sort_order=1, name="销售部")
    make_department("dept_tech", sort_order=2, name="技术部")
    EmployeeFactory(employee_id="mgr_001", name="经理一")
    EmployeeFactory(employee_id="mgr_002", name="经理二")
    return EmployeeFactory(employee_id="admin_001", name="管理员", is_org_admin=True)


def test_spec_3_3_to_3_5_examples(call, spec_org, settings, published):
    settings.MCHAT_PUBLIC_MQTT_HOST, settings.MCHAT_PUBLIC_MQTT_PORT = (
        "broker.example.com",
        8883,
    )
    settings.MCHAT_PUBLIC_MQTT_TLS = True
    created = _send(call, spec_org, SPEC_3_3_REQUEST)
    assert_shape(created, json.loads(SPEC_3_3_RESPONSE))
    assert created["data"]["employee_id"] == "emp_zhangsan_001"
    assert created["data"]["mqtt_connection"]["broker_host"] == "broker.example.com"
    services.employee_create(
        actor=None,
        name="销售小助",
        is_ai_agent=True,
        id_slug="sales",
        department_id="dept_sales",
    )

    published.clear()
    updated = _send(call, spec_org, SPEC_3_4_REQUEST)
    assert_shape(updated, json.loads(SPEC_3_4_RESPONSE))
    [profile_event] = published.to("mchat/profile/emp_zhangsan_001")
    assert_shape(profile_event, json.loads(SPEC_3_18_PROFILE))
    assert profile_event["fields"] == [
        "name",
        "manager_id",
    ]  # department_id was already dept_sales

    tree = _send(call, spec_org, SPEC_3_5_REQUEST)
    assert_shape(tree, json.loads(SPEC_3_5_RESPONSE))
    assert [d["department_id"] for d in tree["data"]["departments"]] == [
        "dept_sales",
        "dept_tech",
    ]
    assert {"emp_zhangsan_001", "ai_sales_001"} <= {e["employee_id"] for e in tree["data"]["employees"]}


def test_spec_3_6_examples(call, spec_org, challenge):
    created = _send(call, spec_org, SPEC_3_6_CREATE)
    assert_shape(created, GENERIC_RESPONSE)
    assert created["code"] == 0, created
    assert created["data"]["parent_id"] == "dept_sales"

    make_department("dept_east", name="华东区")
    updated = _send(call, spec_org, SPEC_3_6_UPDATE)
    assert updated["code"] == 0, updated
    assert (
        updated["data"]["name"],
        updated["data"]["parent_id"],
        updated["data"]["sort_order"],
    ) == (
        "华东销售区",
        "dept_sales",
        2,
    )

    # department.delete is sensitive (DESIGN §5): the documented request plus a challenge.
    refused = _send(call, spec_org, SPEC_3_6_DELETE)
    assert refused["code"] == 401
    deleted = _send(
        call,
        spec_org,
        SPEC_3_6_DELETE.replace("dept_seq_003", "dept_seq_004"),
        **challenge(spec_org),
    )
    assert_shape(deleted, GENERIC_RESPONSE)
    assert deleted["code"] == 0, deleted
    assert deleted["data"]["department_id"] == "dept_east"
