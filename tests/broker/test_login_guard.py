"""The plugin's login guard with a real Mosquitto: a guesser hammering one account is refused
without its password being checked, while a second employee connects normally; spraying from
one address locks that address; windows end. Other client addresses are other loopback
addresses (127.0.0.x), which the kernel routes to the broker's 127.0.0.1 listener."""

from __future__ import annotations

import pytest

from tests.broker_harness import BrokerHarness, try_connect, wait_until

pytestmark = pytest.mark.broker

USERS = {"emp_a": "secret-a", "emp_b": "secret-b", "mchat-bridge": "secret-bridge"}
NOT_AUTHORIZED = 135
GUESSER = "127.0.0.2"


def connect(broker, username, password, source="127.0.0.1"):
    return try_connect(broker.port, username, password, f"{username}_dev1", source_address=source)


@pytest.fixture
def broker(tmp_path):
    # Long windows: nothing expires while a test runs, whatever the machine's load.
    options = {"guard_user_failures": 3, "guard_address_failures": 6, "guard_base_ms": 600_000}
    harness = BrokerHarness(tmp_path / "mosquitto", users=USERS, plugin_options=options)
    yield harness
    harness.stop()


def test_a_guesser_is_refused_unchecked_while_a_colleague_connects(broker):
    assert connect(broker, "emp_a", "secret-a") == 0
    for guess in ("123456", "password", "qwerty"):
        assert connect(broker, "emp_a", guess, GUESSER) == NOT_AUTHORIZED
    assert 'user "emp_a": 3 failed logins, refusing it for 600000 ms' in broker.log()

    # The guesser keeps hammering: refused at once, the right password included, from anywhere.
    for _ in range(30):
        assert connect(broker, "emp_a", "guess", GUESSER) == NOT_AUTHORIZED
    assert connect(broker, "emp_a", "secret-a", GUESSER) == NOT_AUTHORIZED
    assert connect(broker, "emp_a", "secret-a", "127.0.0.3") == NOT_AUTHORIZED

    # A second employee is not slowed: from elsewhere, and even from the guesser's address
    # (one account's failures count at most three times for its address).
    assert connect(broker, "emp_b", "secret-b") == 0
    assert connect(broker, "emp_b", "secret-b", GUESSER) == 0
    # The unchecked refusals are counted, not logged one by one.
    assert broker.log().count("failed logins") == 1


def test_spraying_from_one_address_locks_that_address(broker):
    sprayer = "127.0.0.4"
    for name in ("emp_x1", "emp_x2", "emp_x3", "emp_x4", "emp_x5"):
        assert connect(broker, name, "Spring2026!", sprayer) == NOT_AUTHORIZED
    assert connect(broker, "emp_b", "wrong", sprayer) == NOT_AUTHORIZED
    assert 'address "127.0.0.4": 6 failed logins' in broker.log()
    assert connect(broker, "emp_b", "secret-b", sprayer) == NOT_AUTHORIZED
    assert connect(broker, "emp_b", "secret-b", "127.0.0.5") == 0


def test_a_success_clears_the_username_and_the_bridge_is_never_refused(broker):
    for _ in range(2):
        assert connect(broker, "emp_a", "typo") == NOT_AUTHORIZED
    assert connect(broker, "emp_a", "secret-a") == 0
    for _ in range(2):
        assert connect(broker, "emp_a", "typo") == NOT_AUTHORIZED
    assert connect(broker, "emp_a", "secret-a") == 0
    for _ in range(5):
        assert connect(broker, "mchat-bridge", "wrong", GUESSER) == NOT_AUTHORIZED
    assert connect(broker, "mchat-bridge", "secret-bridge", GUESSER) == 0


def test_the_window_ends(tmp_path):
    options = {"guard_user_failures": 2, "guard_base_ms": 300, "guard_max_ms": 300}
    with BrokerHarness(tmp_path / "mosquitto", users=USERS, plugin_options=options) as broker:
        for _ in range(2):
            assert connect(broker, "emp_a", "guess", GUESSER) == NOT_AUTHORIZED
        # Attempts during the window are refused and do not extend it: the right password
        # gets through once the window is over.
        assert wait_until(lambda: connect(broker, "emp_a", "secret-a") == 0, timeout=10, interval=0.05)
