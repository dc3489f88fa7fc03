"""`manage.py runbridge` as a real process: SIGTERM in the middle of a stream of requests."""

import json
import signal

import pytest

from org.models import AuthChallenge

pytestmark = [pytest.mark.broker, pytest.mark.django_db(transaction=True)]

N = 200


def _stop(process):
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    return output


def test_sigterm_answers_what_it_took_and_the_next_session_the_rest(live):
    live.stop_bridge()  # the in-process bridge; this test runs real processes
    alice, password = live.issue("Alice")
    device = live.connect(alice, password)
    first = live.spawn_bridge(instance="sigterm")
    second = None
    try:
        device.wait_serving()
        request = json.dumps({"action": "auth.challenge"}).encode()
        for n in range(N):
            device.publish_request(f"r{n}", request)
            if n == N // 2:
                first.send_signal(signal.SIGTERM)  # mid-stream
        output, _ = first.communicate(timeout=30)
        assert first.returncode == 0, output
        assert "stopped" in output

        # The same instance resumes its persistent session: what the first process had not
        # taken is waiting there.
        second = live.spawn_bridge(instance="sigterm")
        answers = [device.response(f"r{n}", timeout=30) for n in range(N)]
        assert [a["code"] for a in answers] == [0] * N
        assert AuthChallenge.objects.count() == N  # each executed once
        device.wait_serving()
        assert _stop(second) and second.returncode == 0
        for n in range(N):  # and answered once: taken requests were acknowledged
            assert len(device.mqtt.messages_on(f"mchat/msg/resp/{device.client_id}/r{n}")) == 1
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()


@pytest.mark.django_db(transaction=False)
def test_start_up_is_frozen_out_of_full_garbage_collections():
    import gc

    from bridge.management.commands.runbridge import freeze_start_up
    from bridge.routes import ROUTES

    try:
        freeze_start_up()
        # Django and every handler's module are frozen: a full collection skips them.
        assert gc.get_freeze_count() > 50_000
        assert all("handler" in vars(route) for route in ROUTES.values())  # resolved, cached
    finally:
        gc.unfreeze()  # the rest of the test process collects as usual
