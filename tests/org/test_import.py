"""CSV/XLSX import of departments and employees: through the services, with a dry-run preview
that names row errors (no stack trace), and nothing written until confirmed."""

from __future__ import annotations

import io
import re

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from import_export.formats.base_formats import DEFAULT_FORMATS

from org.models import AgentProfile, Department, Employee
from org.resources import DepartmentResource, EmployeeResource
from tests.factories import EmployeeFactory
from tests.org.conftest import assert_tree_consistent, make_department

pytestmark = pytest.mark.django_db

DEPARTMENTS_CSV = """department_id,name,parent_id,sort_order
dept_sales,销售部,,1
dept_tech,技术部,,2
dept_east,华东区,dept_sales,1
,华西区,dept_sales,2
"""

EMPLOYEES_CSV = """employee_id,name,department_id,manager_id,title,email,phone,is_ai_agent,is_org_admin,is_active
,张三,dept_sales,,销售经理,zhangsan@example.com,,否,否,是
mgr_001,李经理,dept_sales,,总监,,,0,1,1
,销售小助,dept_sales,,,,,是,,
"""


def _dataset(text: str) -> tablib.Dataset:
    return tablib.Dataset().load(text, format="csv")


def test_department_import_builds_the_tree_through_the_service(published):
    result = DepartmentResource().import_data(_dataset(DEPARTMENTS_CSV), dry_run=False, raise_errors=False)
    assert not result.has_errors() and not result.has_validation_errors()
    assert assert_tree_consistent() == [
        "dept_sales",
        "dept_east",
        "dept_huaxiqu",
        "dept_tech",
    ]
    assert Department.objects.get(department_id="dept_east").parent.department_id == "dept_sales"


def test_dry_run_writes_nothing():
    result = DepartmentResource().import_data(_dataset(DEPARTMENTS_CSV), dry_run=True)
    assert not result.has_errors()
    assert not Department.objects.exists()


def test_department_reimport_updates_in_place():
    make_department("dept_sales", name="销售部", sort_order=1)
    make_department("dept_tech", name="技术部", sort_order=2)
    make_department(
        "dept_east",
        name="华东",
        parent=Department.objects.get(department_id="dept_sales"),
    )
    text = "department_id,name,parent_id,sort_order\ndept_east,华东区,dept_tech,3\n"
    result = DepartmentResource().import_data(_dataset(text), dry_run=False)
    assert not result.has_validation_errors()
    east = Department.objects.get(department_id="dept_east")
    assert (east.name, east.parent.department_id, east.sort_order) == (
        "华东区",
        "dept_tech",
        3,
    )
    assert_tree_consistent()


def test_employee_import_uses_the_services(published):
    make_department("dept_sales", name="销售部")
    result = EmployeeResource().import_data(_dataset(EMPLOYEES_CSV), dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors(), [
        (r.number, r.error) for r in result.invalid_rows
    ]
    zhang = Employee.objects.get(employee_id="emp_zhangsan_001")
    assert (zhang.title, zhang.email, zhang.is_org_admin) == (
        "销售经理",
        "zhangsan@example.com",
        False,
    )
    assert Employee.objects.get(employee_id="mgr_001").is_org_admin
    assistant = Employee.objects.get(name="销售小助")
    assert assistant.is_ai_agent and assistant.employee_id.startswith("ai_")
    assert AgentProfile.objects.filter(employee=assistant).exists()
    assert {m.topic for m in published.messages} == set()  # no commit yet inside the test transaction


def test_employee_reimport_updates_and_deactivates(settings):
    make_department("dept_sales", name="销售部")
    bob = EmployeeFactory(employee_id="emp_bob_001", name="Bob")
    text = "employee_id,name,department_id,is_active\nemp_bob_001,鲍勃,dept_sales,否\n"
    result = EmployeeResource().import_data(_dataset(text), dry_run=False)
    assert not result.has_validation_errors(), [r.error for r in result.invalid_rows]
    bob.refresh_from_db()
    assert (bob.name, bob.department.department_id, bob.is_active) == (
        "鲍勃",
        "dept_sales",
        False,
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",王五,dept_nowhere,,,,,,,", "department_id 不存在：dept_nowhere"),
        (",王五,,emp_ghost_001,,,,,,", "manager_id 不存在或已停用：emp_ghost_001"),
        (",,,,,,,,,", "name 不能为空"),
        (",王五,,,,bad-email,,,,", "email"),
        ("Bad Id,王五,,,,,,,,", "employee_id 格式不正确"),
        (",王五,,,,,,maybe,,", "应为 是/否"),
    ],
)
def test_row_errors_name_the_problem(row, message):
    header = EMPLOYEES_CSV.splitlines()[0]
    result = EmployeeResource().import_data(_dataset(f"{header}\n{row}\n"), dry_run=True)
    assert result.has_validation_errors()
    [invalid] = result.invalid_rows
    assert message in str(invalid.error)
    assert Employee.objects.count() == 0


# --- through the admin's import pages ----------------------------------------------------------


def _upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content)


def test_admin_preview_shows_row_errors_without_a_traceback(admin_client):
    make_department("dept_sales", name="销售部")
    csv = EMPLOYEES_CSV + ",赵六,dept_nowhere,,,,,,,\n"
    response = admin_client.post(
        reverse("admin:org_employee_import"),
        {
            "resource": "0",
            "format": "0",
            "import_file": _upload("employees.csv", csv.encode()),
        },
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "department_id 不存在：dept_nowhere" in page
    assert "Traceback" not in page and "File &quot;" not in page
    assert 'name="import_file_name"' not in page  # nothing to confirm while rows are invalid
    assert Employee.objects.count() == 0


def test_admin_preview_then_confirm(admin_client, django_capture_on_commit_callbacks, published, settings):
    make_department("dept_sales", name="销售部")
    preview = admin_client.post(
        reverse("admin:org_employee_import"),
        {
            "resource": "0",
            "format": "0",
            "import_file": _upload("employees.csv", EMPLOYEES_CSV.encode()),
        },
    )
    page = preview.content.decode()
    assert preview.status_code == 200
    assert "张三" in page and "emp_zhangsan_001" in page  # the preview shows the generated ids
    assert Employee.objects.count() == 0  # dry run rolled back
    confirm = {
        name: re.search(rf'name="{name}" value="([^"]*)"', page).group(1)
        for name in ("import_file_name", "original_file_name", "format", "resource")
    }
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(reverse("admin:org_employee_process_import"), confirm, follow=True)
    assert done.status_code == 200
    assert Employee.objects.filter(employee_id__in=["emp_zhangsan_001", "mgr_001"]).count() == 2
    assert "重置 MQTT 凭证" in done.content.decode()
    assert published.to("mchat/profile/emp_zhangsan_001")[0]["event"] == "created"
    assert "emp_zhangsan_001:" in (settings.MCHAT_BROKER_DIR / "passwd").read_text()


def test_admin_imports_xlsx(admin_client):
    data = tablib.Dataset(headers=["department_id", "name", "parent_id", "sort_order"])
    data.append(["dept_sales", "销售部", "", 1])
    data.append(["", "华东区", "dept_sales", 2])
    xlsx_index = str([f().get_title() for f in DEFAULT_FORMATS].index("xlsx"))
    preview = admin_client.post(
        reverse("admin:org_department_import"),
        {
            "resource": "0",
            "format": xlsx_index,
            "import_file": _upload("departments.xlsx", data.export("xlsx")),
        },
    )
    page = preview.content.decode()
    assert preview.status_code == 200, page[:500]
    assert "dept_huadongqu" in page
    confirm = {
        name: re.search(rf'name="{name}" value="([^"]*)"', page).group(1)
        for name in ("import_file_name", "original_file_name", "format", "resource")
    }
    admin_client.post(reverse("admin:org_department_process_import"), confirm)
    assert assert_tree_consistent() == ["dept_sales", "dept_huadongqu"]


def test_export_round_trips(admin_client):
    make_department("dept_sales", name="销售部")
    EmployeeFactory(employee_id="emp_bob_001", name="Bob", department=Department.objects.get())
    exported = EmployeeResource().export()
    assert exported.headers[:3] == ["employee_id", "name", "department_id"]
    assert exported.dict[0]["department_id"] == "dept_sales"
    result = EmployeeResource().import_data(
        tablib.Dataset().load(io.StringIO(exported.csv).read(), format="csv"),
        dry_run=True,
    )
    assert not result.has_validation_errors() and not result.has_errors()
