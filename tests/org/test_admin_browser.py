"""The HR console in a real browser (headless Debian Chromium driven by Playwright), served as
`make up` serves it (gunicorn, hashed static files by WhiteNoise): log in, create a department
and an employee (department picked through the autocomplete), reset the employee's credential
and see the new password exactly once."""

from __future__ import annotations

import pytest

from org.credentials import verify_password
from org.models import Department, Employee
from tests.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


def _password_cells(page) -> list[str]:
    return [cell.inner_text().strip() for cell in page.locator("code.mchat-password").all()]


def _hr_session(base: str) -> dict:
    """Everything the HR user does and sees in the browser. No database access in here:
    Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls."""
    from playwright.sync_api import sync_playwright

    seen: dict = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # A Chinese-speaking HR user: the browser asks for zh-CN like theirs does.
            context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(20_000)

            page.goto(f"{base}/admin/login/")
            seen["login_page"] = page.content()
            page.fill("#id_username", "admin")
            page.fill("#id_password", "password")
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            seen["index_page"] = page.content()

            # A department.
            page.goto(f"{base}/admin/org/department/add/")
            page.fill("#id_name", "销售部")
            page.fill("#id_sort_order", "1")
            page.click("input[name=_save]")
            page.wait_for_url(f"{base}/admin/org/department/")
            seen["department_list"] = page.locator("#result_list").inner_text()
            page.screenshot(path=str(ARTIFACTS_DIR / "mchat-admin-departments.png"), full_page=True)

            # An employee, the department chosen through the autocomplete widget.
            page.goto(f"{base}/admin/org/employee/add/")
            page.fill("#id_name", "张三")
            page.fill("#id_title", "销售经理")
            page.click("[aria-labelledby=select2-id_department-container]")
            page.fill(".select2-container--open .select2-search__field", "销售")
            page.locator(".select2-results__option", has_text="销售部").click()
            page.click("input[name=_save]")
            page.wait_for_selector("#mchat-credentials")
            seen["created_page"] = page.content()
            seen["first_passwords"] = _password_cells(page)

            # Reset its credential from the list: confirm, then the new password, once.
            page.goto(f"{base}/admin/org/employee/")
            page.locator("#result_list tr", has_text="emp_zhangsan_001").locator(
                "input[name=_selected_action]"
            ).check()
            page.select_option("select[name=action]", "reset_credentials")
            page.click("button[name=index]")
            page.wait_for_selector("text=确认重置")
            page.click("input[type=submit][value=确认重置]")
            page.wait_for_selector("#mchat-credentials")
            seen["reset_page"] = page.content()
            seen["new_passwords"] = _password_cells(page)
            page.screenshot(
                path=str(ARTIFACTS_DIR / "mchat-admin-credential-reset.png"),
                full_page=True,
            )

            # Then the employee's own page and the list again.
            page.click("#mchat-credentials a")  # the employee's change page
            page.wait_for_selector("#employee_form")
            seen["employee_page"] = page.content()
            page.goto(f"{base}/admin/org/employee/")
            seen["employee_list"] = page.content()
        finally:
            browser.close()
    return seen


def test_hr_creates_department_and_employee_and_resets_a_credential(web_server, admin_user):
    seen = _hr_session(web_server.url)

    assert "MChat 组织管理后台" in seen["login_page"]
    assert "站点管理" in seen["index_page"]
    assert seen["department_list"].count("dept_xiaoshoubu") == 1
    assert "以下密码只显示这一次" in seen["created_page"]
    [first_password] = seen["first_passwords"]
    [new_password] = seen["new_passwords"]
    assert new_password != first_password
    assert seen["reset_page"].count(new_password) == 1
    for later in ("employee_page", "employee_list"):
        assert "emp_zhangsan_001" in seen[later]
        assert new_password not in seen[later] and first_password not in seen[later]

    employee = Employee.objects.get(employee_id="emp_zhangsan_001")
    assert employee.department == Department.objects.get(department_id="dept_xiaoshoubu")
    assert employee.title == "销售经理"
    assert verify_password(new_password, employee.mqtt_password_hash)
    assert not verify_password(first_password, employee.mqtt_password_hash)
