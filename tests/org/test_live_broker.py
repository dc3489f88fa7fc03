"""Org changes on a real Mosquitto (with the mchat plugin) through a real bridge."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings

from tests.broker_harness import mqtt_client, try_connect, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def test_a_created_employees_credential_is_accepted_by_the_running_broker(live):
    admin, password = live.issue("组织管理员", org_admin=True)
    console = live.connect(admin, password)

    response = console.request("employee.create", name="新同事", title="工程师")
    assert response["code"] == 0, response
    connection = response["data"]["mqtt_connection"]
    assert connection["broker_port"] == live.port
    username, secret = connection["mqtt_username"], connection["mqtt_password"]

    # The broker applies the new password file on a reload that follows the answer (how soon
    # is a latency question for the benchmark, not this test).
    accepted = wait_until(
        lambda: try_connect(live.port, username, secret, f"{username}_probe") == 0, interval=0.02
    )
    assert accepted, "the new credential was never accepted"

    newcomer = live.connect(username, secret, device="laptop")
    tree = newcomer.request("org.tree")
    assert tree["code"] == 0
    assert username in [e["employee_id"] for e in tree["data"]["employees"]]


def test_deactivation_disconnects_live_sessions_and_refuses_new_ones(live):
    admin, admin_password = live.issue("组织管理员", org_admin=True)
    bob, bob_password = live.issue("Bob")
    console = live.connect(admin, admin_password)
    phone = live.connect(bob, bob_password, device="phone")
    laptop = live.connect(bob, bob_password, device="laptop")
    assert phone.request("org.tree")["code"] == 0

    response = console.request("employee.update", employee_id=bob.employee_id, updates={"is_active": False})
    assert response["code"] == 0, response

    assert phone.mqtt.disconnected.wait(3), "the phone session must be disconnected"
    assert laptop.mqtt.disconnected.wait(3), "the laptop session must be disconnected"
    with pytest.raises(ConnectionRefusedError):
        mqtt_client(
            live.port,
            bob.employee_id,
            bob_password,
            f"{bob.employee_id}_again",
            timeout=3,
        )

    # Reactivated, the same credential logs in again.
    assert (
        console.request("employee.update", employee_id=bob.employee_id, updates={"is_active": True})["code"]
        == 0
    )
    assert wait_until(
        lambda: try_connect(live.port, bob.employee_id, bob_password, f"{bob.employee_id}_back") == 0,
        interval=0.05,
    ), "the reactivated credential was not accepted"


def test_profile_changes_reach_subscribers(live):
    admin, admin_password = live.issue("组织管理员", org_admin=True)
    alice, alice_password = live.issue("Alice")
    watcher = live.connect(alice, alice_password)
    watcher.subscribe("mchat/profile/+")
    console = live.connect(admin, admin_password)

    assert (
        console.request(
            "employee.update",
            employee_id=alice.employee_id,
            updates={"signature": "忙碌中"},
        )["code"]
        == 0
    )
    topic = f"mchat/profile/{alice.employee_id}"

    # Alice's "created" event may still be on its way when the watcher subscribes.
    assert watcher.wait_for(
        lambda msgs: any(m.topic == topic and b'"updated"' in m.payload for m in msgs), timeout=5
    ), "no profile event on the broker"
    [event] = [m for m in watcher.messages(topic) if m["event"] == "updated"]
    assert (event["event"], event["fields"], event["profile"]["signature"]) == (
        "updated",
        ["signature"],
        "忙碌中",
    )


def test_createemployee_in_its_own_process_reaches_the_running_broker(live):
    """A short-lived process exits before its debounced broker sync would fire: the sync
    still happens (at exit), so the printed credential works at once."""
    command = [sys.executable, "manage.py", "createemployee", "--name", "命令行同事", "--json"]
    env = {**live.subprocess_env(), "MCHAT_BROKER_SYNC_DEBOUNCE": "5"}
    done = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    connection = json.loads(done.stdout)["mqtt_connection"]
    username, secret = connection["mqtt_username"], connection["mqtt_password"]
    assert wait_until(
        lambda: try_connect(live.port, username, secret, f"{username}_cli") == 0, interval=0.05
    ), "the new credential was not accepted"
