"""Agents and people for agent tests."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mchat_sdk import Agent, Client
from org import services
from org.models import DevicePresence
from tests.factories import EmployeeFactory
from tests.sdk.conftest import connection_for, sdk  # noqa: F401 - the live SDK fixture, shared


@pytest.fixture
def owner(db):
    return EmployeeFactory(employee_id="emp_owner_001", name="负责人")


@pytest.fixture
def make_agent(owner):
    """make_agent(name, slug, capabilities=[...], employee={...}) -> the agent (through the service)."""

    def make(name: str, slug: str, *, employee: dict | None = None, **agent):
        agent.setdefault("owner", owner.employee_id)
        issued = services.employee_create(
            actor=None, name=name, is_ai_agent=True, id_slug=slug, agent=agent, **(employee or {})
        )
        return issued.employee

    return make


def set_online(employee, online: bool = True) -> None:
    """What org.presence records when a device of `employee` reports its status."""
    DevicePresence.objects.update_or_create(
        client_id=f"{employee.employee_id}_dev1",
        defaults={"employee": employee, "online": online, "updated_at": timezone.now()},
    )


# --- live stack (tests/live.py): SDK clients and agent runtimes --------------------------------


@pytest.fixture
def issue_agent(live):
    """issue_agent(name, slug, capabilities=[...], ack_deadline_seconds=...) -> (employee, password)."""

    def issue(name: str, slug: str, **agent):
        issued = services.employee_create(actor=None, name=name, is_ai_agent=True, id_slug=slug, agent=agent)
        return issued.employee, issued.password

    return issue


@pytest.fixture
def run_agent(live):
    """run_agent(employee, password, handler, **options) -> a started mchat_sdk.Agent."""
    agents: list[Agent] = []

    def start(employee, password: str, handler, *, device: str = "agent", **options) -> Agent:
        client = Client(connection_for(live, employee, password), device=device, request_timeout=10.0)
        agent = Agent(client, handler, **options)
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop(timeout=10, end_session=True)
