"""REST API for HR integration: 401 / 403 / permitted for every endpoint, same services and
error mapping as MQTT, OpenAPI schema."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from org.credentials import verify_password
from org.models import Department, Employee
from tests.factories import EmployeeFactory
from tests.org.conftest import assert_tree_consistent, make_department

pytestmark = pytest.mark.django_db


@pytest.fixture
def org(db):
    sales = make_department("dept_sales", name="销售部", sort_order=1)
    make_department("dept_tech", name="技术部", sort_order=2)
    make_department("dept_empty", name="空部门", sort_order=3)
    EmployeeFactory(employee_id="emp_bob_001", name="Bob", department=sales)
    return sales


def _integration_client(*codenames: str, staff: bool = True) -> APIClient:
    """An integration account authenticated by token, holding exactly these permissions."""
    user = User.objects.create_user(f"hr-{len(codenames)}-{staff}-{User.objects.count()}", is_staff=staff)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="org", codename__in=codenames)
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# (method, path, body, permission that allows it, expected success status)
ENDPOINTS = [
    ("get", "/api/v1/departments/", None, ["view_department"], 200),
    (
        "post",
        "/api/v1/departments/",
        {"name": "华东区", "parent_id": "dept_sales"},
        ["add_department"],
        201,
    ),
    ("get", "/api/v1/departments/dept_sales/", None, ["view_department"], 200),
    (
        "patch",
        "/api/v1/departments/dept_tech/",
        {"sort_order": 0},
        ["change_department"],
        200,
    ),
    ("delete", "/api/v1/departments/dept_empty/", None, ["delete_department"], 204),
    ("get", "/api/v1/employees/", None, ["view_employee"], 200),
    (
        "post",
        "/api/v1/employees/",
        {"name": "王五", "department_id": "dept_sales"},
        ["add_employee"],
        201,
    ),
    ("get", "/api/v1/employees/emp_bob_001/", None, ["view_employee"], 200),
    (
        "patch",
        "/api/v1/employees/emp_bob_001/",
        {"title": "销售"},
        ["change_employee"],
        200,
    ),
    (
        "post",
        "/api/v1/employees/emp_bob_001/reset-credentials/",
        None,
        ["change_employee", "reset_credentials"],
        200,
    ),
    ("get", "/api/v1/org/tree/", None, ["view_department", "view_employee"], 200),
]


def _request(client: APIClient, method: str, path: str, body):
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


@pytest.mark.parametrize(("method", "path", "body", "perms", "ok"), ENDPOINTS)
def test_anonymous_is_401(org, method, path, body, perms, ok):
    response = _request(APIClient(), method, path, body)
    assert response.status_code == 401
    assert response.json()["code"] == 401


@pytest.mark.parametrize(("method", "path", "body", "perms", "ok"), ENDPOINTS)
def test_a_bad_token_is_401(org, method, path, body, perms, ok):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert _request(client, method, path, body).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "perms", "ok"), ENDPOINTS)
def test_without_the_permission_is_403(org, method, path, body, perms, ok):
    # Every other org permission, but not the one(s) this endpoint needs.
    others = Permission.objects.filter(content_type__app_label="org").exclude(codename__in=perms)
    client = _integration_client(*others.values_list("codename", flat=True))
    response = _request(client, method, path, body)
    assert response.status_code == 403
    assert response.json() == {
        "code": 403,
        "message": response.json()["message"],
        "data": None,
    }


@pytest.mark.parametrize(("method", "path", "body", "perms", "ok"), ENDPOINTS)
def test_non_staff_is_403_even_with_the_permission(org, method, path, body, perms, ok):
    assert _request(_integration_client(*perms, staff=False), method, path, body).status_code == 403


@pytest.mark.parametrize(("method", "path", "body", "perms", "ok"), ENDPOINTS)
def test_with_the_permission_succeeds(org, method, path, body, perms, ok):
    response = _request(_integration_client(*perms), method, path, body)
    assert response.status_code == ok, response.content


# --- behaviour ---------------------------------------------------------------------------------


@pytest.fixture
def hr(db):
    codenames = Permission.objects.filter(content_type__app_label="org").values_list("codename", flat=True)
    return _integration_client(*codenames)


def test_create_employee_returns_the_credential_once(hr, org, settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = hr.post(
            "/api/v1/employees/",
            {
                "name": "销售小助",
                "is_ai_agent": True,
                "id_slug": "sales",
                "agent": {"capabilities": ["订单查询"]},
            },
            format="json",
        )
    assert response.status_code == 201
    data = response.json()
    assert data["employee_id"] == "ai_sales_001"
    assert data["agent"]["capabilities"] == ["订单查询"]
    connection = data["mqtt_connection"]
    assert connection["mqtt_username"] == "ai_sales_001"
    stored = Employee.objects.get(employee_id="ai_sales_001")
    assert verify_password(connection["mqtt_password"], stored.mqtt_password_hash)
    assert "ai_sales_001:" in (settings.MCHAT_BROKER_DIR / "passwd").read_text()
    again = hr.get("/api/v1/employees/ai_sales_001/").json()
    assert "mqtt_connection" not in again


def test_employee_list_filters_and_pages(hr, org):
    tech = Department.objects.get(department_id="dept_tech")
    for i in range(3):
        EmployeeFactory(department=tech, name=f"工程师{i}")
    page = hr.get("/api/v1/employees/", {"department_id": "dept_tech", "page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2
    assert all(e["department_id"] == "dept_tech" for e in page["results"])
    found = hr.get("/api/v1/employees/", {"q": "Bob"}).json()["results"]
    assert [e["employee_id"] for e in found] == ["emp_bob_001"]
    unknown = hr.get("/api/v1/employees/", {"department_id": "dept_nowhere"})
    assert (unknown.status_code, unknown.json()["message"]) == (
        400,
        "department_id 不存在：dept_nowhere",
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "get",
            "/api/v1/employees/emp_ghost_001/",
            None,
            404,
            "员工不存在：emp_ghost_001",
        ),
        (
            "patch",
            "/api/v1/employees/emp_ghost_001/",
            {"name": "x"},
            404,
            "员工不存在：emp_ghost_001",
        ),
        ("get", "/api/v1/departments/dept_ghost/", None, 404, "部门不存在：dept_ghost"),
        ("post", "/api/v1/employees/", {}, 400, "name 不能为空"),
        (
            "post",
            "/api/v1/employees/",
            {"name": "x", "department_id": "dept_nowhere"},
            400,
            "department_id 不存在：dept_nowhere",
        ),
        (
            "patch",
            "/api/v1/employees/emp_bob_001/",
            {"nickname": "x"},
            400,
            "nickname 不是可修改的字段",
        ),
        (
            "patch",
            "/api/v1/departments/dept_sales/",
            {"parent_id": "dept_sales"},
            400,
            "parent_id 不能是该部门自身或其下级部门",
        ),
        ("delete", "/api/v1/departments/dept_sales/", None, 400, "move_to"),
    ],
)
def test_errors_use_the_bridges_codes_and_messages(hr, org, method, path, body, status, message):
    response = _request(hr, method, path, body)
    assert response.status_code == status
    payload = response.json()
    assert payload["code"] == status and payload["data"] is None
    assert message in payload["message"]


def test_delete_with_move_to(hr, org):
    response = hr.delete("/api/v1/departments/dept_sales/?move_to=dept_tech")
    assert response.status_code == 204
    assert Employee.objects.get(employee_id="emp_bob_001").department.department_id == "dept_tech"
    assert assert_tree_consistent() == ["dept_tech", "dept_empty"]


def test_deactivate_over_rest(hr, org, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = hr.patch("/api/v1/employees/emp_bob_001/", {"is_active": False}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is False
    assert published.to("mchat/profile/emp_bob_001")[0]["event"] == "deactivated"


def test_org_tree_version(hr, org):
    tree = hr.get("/api/v1/org/tree/").json()
    assert [d["department_id"] for d in tree["departments"]] == [
        "dept_sales",
        "dept_tech",
        "dept_empty",
    ]
    assert hr.get("/api/v1/org/tree/", {"version": tree["version"]}).json() == {
        "version": tree["version"],
        "unchanged": True,
    }


# --- OpenAPI -----------------------------------------------------------------------------------


def test_schema_and_docs_are_served(hr, admin_client):
    schema = hr.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/departments/",
        "/api/v1/employees/{employee_id}/reset-credentials/",
        "/api/v1/org/tree/",
    ):
        assert path in text
    assert admin_client.get("/api/docs/").status_code == 200


def test_org_schema_generates_without_warnings():
    """drf-spectacular's own checks on the org endpoints: no warning or error (an unresolvable
    type, a missing serializer) while generating, and the result is valid OpenAPI 3."""
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    from org import urls

    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        schema = SchemaGenerator(patterns=urls.urlpatterns).get_schema(request=None, public=True)
    problems = {**GENERATOR_STATS._warn_cache, **GENERATOR_STATS._error_cache}
    GENERATOR_STATS.reset()
    assert not problems
    validate_schema(schema)
    assert "/api/v1/employees/{employee_id}/reset-credentials/" in schema["paths"]


def test_reset_credentials_needs_its_own_permission(org):
    client = _integration_client("view_employee", "change_employee", "add_employee")
    response = client.post("/api/v1/employees/emp_bob_001/reset-credentials/")
    assert response.status_code == 403
    assert verify_password("secret", Employee.objects.get(employee_id="emp_bob_001").mqtt_password_hash)
