"""The HR console in a real browser (headless Debian Chromium driven by Playwright): log in,
create a department and an employee (department picked through the autocomplete), reset the
employee's credential and see the new password exactly once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.broker import verify_password
from org.models import Department, Employee

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("MCHAT_SCREENSHOT_DIR", "/tmp"))


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # ordinary blocking calls made between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            # A Chinese-speaking HR user: the browser asks for zh-CN like theirs does.
            context = browser.new_context(
                locale="zh-CN", viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def _password_cells(page) -> list[str]:
    return [
        cell.inner_text().strip() for cell in page.locator("code.mchat-password").all()
    ]


def test_hr_creates_department_and_employee_and_resets_a_credential(
    live_server, admin_user, browser_page
):
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/")
    assert "MChat 组织管理后台" in page.content()
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert "站点管理" in page.content()

    # A department.
    page.goto(f"{live_server.url}/admin/org/department/add/")
    page.fill("#id_name", "销售部")
    page.fill("#id_sort_order", "1")
    page.click("input[name=_save]")
    page.wait_for_url(f"{live_server.url}/admin/org/department/")
    assert page.locator("#result_list").inner_text().count("dept_xiaoshoubu") == 1
    page.screenshot(
        path=str(SCREENSHOT_DIR / "mchat-admin-departments.png"), full_page=True
    )

    # An employee, the department chosen through the autocomplete widget.
    page.goto(f"{live_server.url}/admin/org/employee/add/")
    page.fill("#id_name", "张三")
    page.fill("#id_title", "销售经理")
    page.click("[aria-labelledby=select2-id_department-container]")
    page.fill(".select2-container--open .select2-search__field", "销售")
    page.locator(".select2-results__option", has_text="销售部").click()
    page.click("input[name=_save]")
    page.wait_for_selector("#mchat-credentials")
    assert "以下密码只显示这一次" in page.content()
    [first_password] = _password_cells(page)
    employee = Employee.objects.get(employee_id="emp_zhangsan_001")
    assert employee.department == Department.objects.get(
        department_id="dept_xiaoshoubu"
    )
    assert verify_password(first_password, employee.mqtt_password_hash)

    # Reset its credential from the list: confirm, then the new password, once.
    page.goto(f"{live_server.url}/admin/org/employee/")
    page.check(f"input[name=_selected_action][value='{employee.pk}']")
    page.select_option("select[name=action]", "reset_credentials")
    page.click("button[name=index]")
    page.wait_for_selector("text=确认重置")
    page.click("input[type=submit][value=确认重置]")
    page.wait_for_selector("#mchat-credentials")
    [new_password] = _password_cells(page)
    page.screenshot(
        path=str(SCREENSHOT_DIR / "mchat-admin-credential-reset.png"), full_page=True
    )
    assert new_password != first_password
    assert page.content().count(new_password) == 1
    employee.refresh_from_db()
    assert verify_password(new_password, employee.mqtt_password_hash)
    assert not verify_password(first_password, employee.mqtt_password_hash)

    # Nowhere else: not on the employee's page, not in the list.
    for url in (f"/admin/org/employee/{employee.pk}/change/", "/admin/org/employee/"):
        page.goto(f"{live_server.url}{url}")
        assert new_password not in page.content()
        assert "emp_zhangsan_001" in page.content()
