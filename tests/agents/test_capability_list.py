"""agent.capability_list (spec 3.15): skill search, department filter, online agents first."""

import pytest

from org import services
from tests.agents.conftest import set_online
from tests.factories import DepartmentFactory, EmployeeFactory

pytestmark = pytest.mark.django_db

SPEC_PROFILE_KEYS = {"employee_id", "name", "capabilities", "skills_badge"}


def test_the_spec_example(call, make_agent):
    make_agent("销售小助", "sales", capabilities=["订单查询", "产品推荐"], skills_badge=["⚡实时响应"])
    asker = EmployeeFactory()
    response = call(asker, "agent.capability_list", seq_id="agent_cap_seq_001", skill="订单查询")
    assert response["seq_id"] == "agent_cap_seq_001"
    assert (response["code"], response["message"]) == (0, "ok")
    data = response["data"]
    assert data["skill"] == "订单查询"
    assert data["agent_ids"] == ["ai_sales_001"]
    [profile] = data["agent_profiles"]
    assert {k: profile[k] for k in SPEC_PROFILE_KEYS} == {
        "employee_id": "ai_sales_001",
        "name": "销售小助",
        "capabilities": ["订单查询", "产品推荐"],
        "skills_badge": ["⚡实时响应"],
    }
    assert profile["owner_id"] == "emp_owner_001"
    assert (profile["online"], profile["match"]) == (False, "exact")


def test_exact_matches_come_before_partial_ones_and_online_agents_first(call, make_agent):
    partial_online = make_agent("甲", "a", capabilities=["订单查询（海外）"])
    exact_offline = make_agent("乙", "b", capabilities=["订单查询"])
    exact_online = make_agent("丙", "c", capabilities=["退货", "订单查询"])
    make_agent("丁", "d", capabilities=["产品推荐"])
    set_online(partial_online)
    set_online(exact_online)
    data = call(EmployeeFactory(), "agent.capability_list", skill="订单查询")["data"]
    assert data["agent_ids"] == [
        exact_online.employee_id,
        exact_offline.employee_id,
        partial_online.employee_id,
    ]
    assert [p["match"] for p in data["agent_profiles"]] == ["exact", "exact", "partial"]
    assert [p["online"] for p in data["agent_profiles"]] == [True, False, True]


def test_skill_matching_ignores_case_and_surrounding_space(call, make_agent):
    agent = make_agent("Bot", "bot", capabilities=["Order Lookup"])
    data = call(EmployeeFactory(), "agent.capability_list", skill="  order lookup ")["data"]
    assert (data["skill"], data["agent_ids"]) == ("order lookup", [agent.employee_id])
    assert call(EmployeeFactory(), "agent.capability_list", skill="LOOK")["data"]["agent_ids"] == [
        agent.employee_id
    ]


def test_without_a_skill_every_active_agent_is_listed_online_first(call, make_agent):
    first = make_agent("A", "one", capabilities=["x"])
    second = make_agent("B", "two")
    gone = make_agent("C", "three", capabilities=["x"])
    services.employee_deactivate(actor=None, employee_id=gone.employee_id)
    EmployeeFactory(name="人类")  # people are not agents
    set_online(second)
    data = call(EmployeeFactory(), "agent.capability_list")["data"]
    assert data["skill"] is None
    assert data["agent_ids"] == [second.employee_id, first.employee_id]
    assert data["agent_profiles"][0]["capabilities"] == []


def test_a_department_filter_includes_its_sub_departments(call, make_agent):
    sales = DepartmentFactory(department_id="dept_sales")
    east = DepartmentFactory(department_id="dept_sales_east", parent=sales)
    other = DepartmentFactory(department_id="dept_tech")
    inside = make_agent(
        "东区助手", "east", capabilities=["订单查询"], employee={"department_id": east.department_id}
    )
    make_agent("技术助手", "tech", capabilities=["订单查询"], employee={"department_id": other.department_id})
    data = call(EmployeeFactory(), "agent.capability_list", skill="订单查询", department_id="dept_sales")[
        "data"
    ]
    assert data["agent_ids"] == [inside.employee_id]
    assert data["agent_profiles"][0]["department_id"] == "dept_sales_east"


def test_no_match_is_an_empty_list_and_bad_input_names_the_field(call, make_agent):
    make_agent("A", "one", capabilities=["订单查询"])
    asker = EmployeeFactory()
    assert call(asker, "agent.capability_list", skill="天气")["data"] == {
        "skill": "天气",
        "agent_ids": [],
        "agent_profiles": [],
    }
    too_long = call(asker, "agent.capability_list", skill="x" * 51)
    assert too_long["code"] == 400 and too_long["message"].startswith("skill")
    missing = call(asker, "agent.capability_list", department_id="dept_nowhere")
    assert missing["code"] == 404 and "dept_nowhere" in missing["message"]


def test_the_list_follows_profile_changes(call, make_agent, owner):
    agent = make_agent("A", "one", capabilities=["翻译"])
    asker = EmployeeFactory()
    assert call(asker, "agent.capability_list", skill="订单查询")["data"]["agent_ids"] == []
    changed = call(
        owner,
        "employee.update",
        employee_id=agent.employee_id,
        updates={"agent": {"capabilities": ["订单查询"]}},
    )
    assert changed["code"] == 0, changed
    assert call(asker, "agent.capability_list", skill="订单查询")["data"]["agent_ids"] == [agent.employee_id]
