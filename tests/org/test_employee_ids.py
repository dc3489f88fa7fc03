"""Employee and department ids: readable like the spec's, unique, valid MQTT usernames and topic levels."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mchat.wire import CLIENT_ID_RE
from org import services
from org.employee_ids import employee_id_stem
from org.models import DEPARTMENT_ID_PATTERN, EMPLOYEE_ID_PATTERN

pytestmark = pytest.mark.django_db


def _valid_mqtt_identity(employee_id: str) -> bool:
    """A username Mosquitto's password_file accepts and a single topic level (no / + # : or
    whitespace), and the bridge can split "{employee_id}_{device}" back into it."""
    return (
        re.fullmatch(EMPLOYEE_ID_PATTERN, employee_id) is not None
        and not set(employee_id) & set("/+#: \t\r\n")
        and CLIENT_ID_RE.match(f"{employee_id}_dev1").group(1) == employee_id
    )


def test_people_get_pinyin_and_a_counter():
    first = services.employee_create(actor=None, name="张三").employee
    second = services.employee_create(actor=None, name="张三").employee
    assert (first.employee_id, second.employee_id) == (
        "emp_zhangsan_001",
        "emp_zhangsan_002",
    )


def test_agents_get_a_slug_or_their_names_pinyin():
    named = services.employee_create(actor=None, name="销售小助", is_ai_agent=True, id_slug="sales")
    plain = services.employee_create(actor=None, name="客服助手", is_ai_agent=True)
    assert named.employee.employee_id == "ai_sales_001"
    assert plain.employee.employee_id == "ai_kefuzhushou_001"


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("Zoë O'Brien", "emp_zoeobrien"),
        ("李 雷", "emp_lilei"),
        ("😀", "emp_user"),
        ("Ａｌｉｃｅ", "emp_alice"),  # full-width letters
        ("王" * 60, "emp_" + "wang" * 10),
    ],
)
def test_stems_are_ascii_and_bounded(name, stem):
    assert employee_id_stem(name=name, is_ai_agent=False) == stem


def test_counter_continues_past_gaps_and_other_stems():
    services.employee_create(actor=None, name="张三")
    services.employee_create(actor=None, name="张三丰")  # emp_zhangsanfeng_001: another stem
    assert services.employee_create(actor=None, name="张三").employee.employee_id == "emp_zhangsan_002"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=80).filter(str.strip),
    agent=st.booleans(),
)
def test_any_name_gives_a_valid_unique_id(name, agent):
    issued = services.employee_create(actor=None, name=name, is_ai_agent=agent)
    assert _valid_mqtt_identity(issued.employee.employee_id)
    again = services.employee_create(actor=None, name=name, is_ai_agent=agent)
    assert again.employee.employee_id != issued.employee.employee_id


def test_department_ids_use_pinyin_and_count_only_when_taken():
    first = services.department_create(actor=None, name="华东区")
    second = services.department_create(actor=None, name="华东区")
    explicit = services.department_create(actor=None, name="销售部", department_id="dept_sales")
    assert (first.department_id, second.department_id, explicit.department_id) == (
        "dept_huadongqu",
        "dept_huadongqu_002",
        "dept_sales",
    )
    assert all(re.fullmatch(DEPARTMENT_ID_PATTERN, d) for d in ("dept_huadongqu_002", "dept_sales"))


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "line\nbreak"])
def test_control_characters_are_refused(name):
    from mchat.errors import BadRequest

    with pytest.raises(BadRequest, match="name 不能包含控制字符"):
        services.employee_create(actor=None, name=name)


def test_an_explicit_employee_id_is_used_when_free_and_valid():
    from mchat.errors import BadRequest

    assert (
        services.employee_create(actor=None, name="经理", employee_id="mgr_001").employee.employee_id
        == "mgr_001"
    )
    with pytest.raises(BadRequest, match="employee_id 已存在：mgr_001"):
        services.employee_create(actor=None, name="经理", employee_id="mgr_001")
    with pytest.raises(BadRequest, match="employee_id 格式不正确"):
        services.employee_create(actor=None, name="经理", employee_id="Mgr-001")


def test_createemployee_command_prints_the_credential_once(capsys):
    import json

    from django.core.management import call_command

    services.department_create(actor=None, name="销售部", department_id="dept_sales")
    call_command(
        "createemployee",
        "--name",
        "销售小助",
        "--agent",
        "--id-slug",
        "sales",
        "--department",
        "dept_sales",
        "--json",
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["employee_id"] == "ai_sales_001"
    assert printed["mqtt_connection"]["mqtt_username"] == "ai_sales_001"
    from org.models import Employee

    assert Employee.objects.get(employee_id="ai_sales_001").department.department_id == "dept_sales"
