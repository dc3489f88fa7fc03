"""SDK clients on the live stack (tests/live.py): real Mosquitto, a real bridge, mchat_sdk."""

from __future__ import annotations

import pytest

from mchat_sdk import Client
from org import services


def connection_for(live, employee, password: str) -> dict:
    """The spec 3.3 mqtt_connection of an employee on the live test broker."""
    return {
        "broker_host": "127.0.0.1",
        "broker_port": live.port,
        "use_tls": False,
        "mqtt_username": employee.employee_id,
        "mqtt_password": password,
    }


@pytest.fixture
def sdk(live):
    """sdk(employee, password, device=...) -> a connected mchat_sdk.Client, closed at teardown."""
    clients: list[Client] = []

    def connect(employee, password: str, *, device: str = "sdk", **options) -> Client:
        options.setdefault("request_timeout", 10.0)
        client = Client(connection_for(live, employee, password), device=device, **options)
        clients.append(client)
        return client.connect()

    yield connect
    for client in clients:
        # Ended, not kept: the next test re-issues the same employee ids with new passwords,
        # and Mosquitto 2.0.11 can crash expiring an offline session whose credential changed.
        client.close(end_session=True)


@pytest.fixture
def issue_agent(live):
    """issue_agent(name, capabilities=[...], ack_deadline_seconds=...) -> (employee, password)."""

    def issue(name: str, **agent):
        issued = services.employee_create(actor=None, name=name, is_ai_agent=True, agent=agent)
        return issued.employee, issued.password

    return issue
