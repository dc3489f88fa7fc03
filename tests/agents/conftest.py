"""Agents and people for agent tests."""

from __future__ import annotations

import pytest
from django.utils import timezone

from org import services
from org.models import DevicePresence
from tests.factories import EmployeeFactory


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
