"""The capacity bench's code path on 200 connections (bench/capacity.py): a private Mosquitto
with the plugin and the rendered config, swarm processes that log in, subscribe and hold,
a broker restart with messages queued for offline persistent sessions, the storm back.
What it measures is not asserted (speed lives in bench/CAPACITY.md); what it counts is."""

import pytest

from bench import capacity

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def test_capacity_bench_holds_restarts_and_loses_nothing_on_200_connections():
    args = capacity.parse_args(
        [
            "--connections=200",
            "--processes=1",
            "--window=50",
            "--hold=0.5",
            "--offline=20",
            "--queued=2",
            "--storm-messages=150",
            "--presence-probe=40",
            "--no-write",
        ]
    )
    results = capacity.run(args)

    assert results["connect"]["connected"] == 200
    assert results["held"]["open"] == 200 and results["held"]["dropped"] == 0
    assert results["before_restart"] == {**results["before_restart"], "offline": 20, "unacknowledged": 0}
    assert results["while_offline"]["unacknowledged"] == 0
    storm = results["storm"]
    assert storm["reconnected"] == 200
    assert storm["sessions_resumed"] == 200  # every session came back from the persistence file
    assert storm["messages_expected"] == 20 * 2 + 150
    assert storm["lost"] == 0 and storm["messages_received"] == storm["messages_expected"]
    assert storm["duplicates"] == 0
    assert results["broker_log"]["errors"] == []
    # With mchat/status/+ every status reaches every employee: 40 x 40.
    assert results["presence_probe"]["status_deliveries"] == 40 * 40
    assert "| connections held | 200 of 200 tried" in capacity.render(results)
