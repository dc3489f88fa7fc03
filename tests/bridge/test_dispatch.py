"""The request pipeline (DESIGN §4) with raw bytes in and decoded responses out."""

import json

import pytest

from bridge.dispatch import Dispatcher
from bridge.models import ProcessedRequest
from bridge.ratelimit import RateLimiter
from bridge.routes import ROUTES, Route
from mchat.errors import BadRequest, RateLimited
from mchat.wire import encode
from org.models import AuthChallenge, Device
from tests.factories import EmployeeFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return EmployeeFactory(employee_id="emp_alice_001", name="Alice")


def _nothing_stored():
    return ProcessedRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{}", "payload 不是有效的 UTF-8"),
        (b"{not json", "payload 不是有效的 JSON"),
        (b"[1, 2]", "payload 必须是 JSON 对象"),
        (b"42", "payload 必须是 JSON 对象"),
        (b'{"seq_id": "x"}', "action 不能为空"),
        (b'{"action": 7}', "action 必须是字符串"),
        (b'{"action": "no.such"}', "未知的 action：no.such"),
    ],
)
def test_malformed_payload_is_400_naming_the_problem(call, alice, raw, message):
    response = call(alice, raw=raw, seq_id="s1")
    assert response == {"seq_id": "s1", "code": 400, "message": message, "data": None}
    assert _nothing_stored()


def test_payload_seq_id_must_match_topic(call, alice):
    response = call(
        alice, "auth.challenge", seq_id="s1", raw=encode({"action": "auth.challenge", "seq_id": "s2"})
    )
    assert response["code"] == 400
    assert "seq_id" in response["message"]
    assert not AuthChallenge.objects.exists()


def test_payload_over_limit_is_400(call, alice, settings, dispatcher):
    dispatcher.max_payload = 1024
    body = encode({"action": "auth.challenge", "pad": "x" * 2000})
    response = call(alice, raw=body)
    assert response["code"] == 400
    assert "1024" in response["message"]
    assert not AuthChallenge.objects.exists()


@pytest.mark.parametrize(
    ("topic", "reply_topic", "fragment"),
    [
        ("mchat/msg/req/emp_alice_001_dev1/a/b", "mchat/msg/resp/emp_alice_001_dev1/a/b", "Topic 层级"),
        ("mchat/msg/req/emp_alice_001_dev1", "mchat/msg/resp/emp_alice_001_dev1", "Topic 层级"),
        ("mchat/msg/req/emp_alice_001_dev1/", "mchat/msg/resp/emp_alice_001_dev1/", "seq_id 不能为空"),
        ("mchat/msg/req/emp_alice_001_dev1/" + "x" * 129, None, "seq_id 格式"),
    ],
)
def test_bad_topic_levels_get_400_on_the_mirrored_reply_topic(
    dispatcher, published, alice, topic, reply_topic, fragment
):
    outcome = dispatcher.handle(topic, encode({"action": "auth.challenge"}))
    assert outcome.response["code"] == 400
    assert fragment in outcome.response["message"]
    assert published.messages[-1].topic == (reply_topic or "mchat/msg/resp/" + topic.split("req/", 1)[1])
    assert not AuthChallenge.objects.exists()


def test_topics_without_a_client_to_answer_are_dropped(dispatcher, published):
    for topic in ("mchat/other", "mchat/msg/req/", "mchat/msg/req/NOT VALID/s1"):
        outcome = dispatcher.handle(topic, b"{}")
        assert outcome.response is None
    assert published.messages == []


def test_unknown_employee_gets_401(dispatcher, published):
    outcome = dispatcher.handle("mchat/msg/req/emp_ghost_001_dev1/s1", encode({"action": "auth.challenge"}))
    assert outcome.response["code"] == 401
    assert published.messages[0].topic == "mchat/msg/resp/emp_ghost_001_dev1/s1"


def test_inactive_employee_gets_401(call):
    former = EmployeeFactory(is_active=False)
    assert call(former, "auth.challenge")["code"] == 401
    assert not AuthChallenge.objects.exists()


def test_bind_confirms_own_identity_and_records_device(call, alice):
    response = call(alice, "auth.bind", seq_id="b1", device="phone", employee_id="emp_alice_001")
    assert response == {"seq_id": "b1", "code": 0, "message": "ok", "data": {}}
    assert Device.objects.get().client_id == "emp_alice_001_phone"


def test_bind_to_someone_else_is_403(call, alice):
    EmployeeFactory(employee_id="emp_bob_001")
    response = call(alice, "auth.bind", employee_id="emp_bob_001")
    assert response["code"] == 403
    assert not Device.objects.exists()


def test_bind_without_employee_id_names_the_field(call, alice):
    response = call(alice, "auth.bind")
    assert response["code"] == 400
    assert response["message"].startswith("employee_id")


def test_challenge_has_spec_shape(call, alice):
    data = call(alice, "auth.challenge")["data"]
    assert set(data) == {"challenge_id", "token", "expires_at"}
    assert data["challenge_id"].startswith("ch_")
    assert data["expires_at"].endswith("Z")
    stored = AuthChallenge.objects.get()
    assert stored.token_hash != data["token"]


def test_repeat_seq_id_replays_the_answer_and_executes_nothing(call, alice, published):
    first = call(alice, "auth.challenge", seq_id="same")
    second = call(alice, "auth.challenge", seq_id="same")
    assert first == second
    assert AuthChallenge.objects.count() == 1
    assert len(published.to("mchat/msg/resp/emp_alice_001_dev1/same")) == 2


def test_same_seq_id_from_another_device_is_another_request(call, alice):
    call(alice, "auth.challenge", seq_id="same", device="a")
    call(alice, "auth.challenge", seq_id="same", device="b")
    assert AuthChallenge.objects.count() == 2


def test_refusals_are_replayed_too(call, alice):
    EmployeeFactory(employee_id="emp_bob_001")
    first = call(alice, "auth.bind", seq_id="r", employee_id="emp_bob_001")
    # A retry under the same seq_id gets the stored answer, not a fresh execution.
    second = call(alice, "auth.bind", seq_id="r", employee_id="emp_alice_001")
    assert first == second
    assert first["code"] == 403
    assert not Device.objects.exists()


def _exploding(request):
    raise RuntimeError("secret database password in here")


def _refusing(request):
    raise BadRequest("member_ids 不能为空")


def test_unexpected_error_is_500_without_exception_text(published, alice, caplog):
    routes = {"boom": Route("boom", "tests.bridge.test_dispatch:_exploding", "write")}
    dispatcher = Dispatcher(published, routes=routes, limiter=RateLimiter({}))
    outcome = dispatcher.handle("mchat/msg/req/emp_alice_001_dev1/s1", encode({"action": "boom"}))
    assert outcome.response["code"] == 500
    assert "secret" not in json.dumps(outcome.response, ensure_ascii=False)
    assert outcome.response["data"]["error_id"] in outcome.response["message"]
    assert "secret database password" in caplog.text  # the traceback is logged, not sent
    assert _nothing_stored()  # a retry may succeed


def test_handler_refusal_rolls_back_and_is_recorded(published, alice):
    routes = {"refuse": Route("refuse", "tests.bridge.test_dispatch:_refusing", "write")}
    dispatcher = Dispatcher(published, routes=routes, limiter=RateLimiter({}))
    outcome = dispatcher.handle("mchat/msg/req/emp_alice_001_dev1/s1", encode({"action": "refuse"}))
    assert outcome.response == {"seq_id": "s1", "code": 400, "message": "member_ids 不能为空", "data": None}
    assert ProcessedRequest.objects.get().response == outcome.response


def test_rate_limit_gives_429_with_retry_after(published, alice):
    dispatcher = Dispatcher(published, limiter=RateLimiter({"auth": [1, 2]}))
    codes = [
        dispatcher.handle(
            f"mchat/msg/req/emp_alice_001_dev1/s{i}", encode({"action": "auth.challenge"})
        ).response
        for i in range(3)
    ]
    assert [c["code"] for c in codes] == [0, 0, 429]
    assert codes[2]["data"]["retry_after_ms"] > 0
    assert AuthChallenge.objects.count() == 2


def test_take_all_spends_every_token_or_none():
    now = [0.0]
    limiter = RateLimiter({"message": [1, 3], "read": [1, 1]}, clock=lambda: now[0])
    alice, bob = ("emp_alice_001", "message"), ("emp_bob_002", "message")
    assert limiter.take_all([alice, alice, bob, ("emp_alice_001", "unlimited")])
    assert not limiter.take_all([alice, alice])  # one left: neither is spent
    limiter.take(employee_id="emp_alice_001", action_class="message")
    with pytest.raises(RateLimited):
        limiter.take(employee_id="emp_alice_001", action_class="message")
    now[0] = 2.0  # two seconds refill two tokens
    assert limiter.take_all([alice, alice]) and not limiter.take_all([alice])


def test_every_route_resolves_to_a_callable():
    for route in ROUTES.values():
        assert callable(route.handler), route.action
        if route.batch is not None:
            assert route.batch.serve_many is None or callable(route.batch.serve_many), route.action
            assert route.batch.serve_known is None or callable(route.batch.serve_known), route.action
            assert route.batch.serve_many is not None or route.batch.serve_known is not None, route.action


def _batch_routes():
    return {
        "auth.challenge": ROUTES["auth.challenge"],
        "boom": Route("boom", "tests.bridge.test_dispatch:_exploding", "write"),
        "refuse": Route("refuse", "tests.bridge.test_dispatch:_refusing", "write"),
    }


def test_a_batch_answers_each_request_on_its_own(published, alice, django_capture_on_commit_callbacks):
    dispatcher = Dispatcher(published, routes=_batch_routes(), limiter=RateLimiter({}))
    topic = "mchat/msg/req/emp_alice_001_dev1/{}".format
    messages = [
        (topic("ok1"), encode({"action": "auth.challenge"})),
        (topic("bad"), b"not json"),
        (topic("boom"), encode({"action": "boom"})),
        (topic("refuse"), encode({"action": "refuse"})),
        (topic("ok2"), encode({"action": "auth.challenge"})),
        (topic("ok1"), encode({"action": "auth.challenge"})),  # a redelivered copy
        ("mchat/elsewhere", b"{}"),
        ("mchat/msg/req/emp_ghost_001_dev1/x", encode({"action": "auth.challenge"})),
    ]
    outcomes = dispatcher.handle_batch(messages)
    codes = [o.response and o.response["code"] for o in outcomes]
    assert codes == [0, 400, 500, 400, 0, 0, None, 401]
    assert outcomes[5].replayed and outcomes[5].response == outcomes[0].response
    # Only the two successes executed; the refusal was recorded, the 500 was not.
    assert AuthChallenge.objects.count() == 2
    assert set(ProcessedRequest.objects.values_list("seq_id", flat=True)) == {"ok1", "ok2", "refuse"}
    assert len(published.messages) == 7


def test_a_batch_replays_answers_recorded_earlier(published, alice):
    dispatcher = Dispatcher(published, limiter=RateLimiter({}))
    first = dispatcher.handle("mchat/msg/req/emp_alice_001_dev1/s1", encode({"action": "auth.challenge"}))
    outcomes = dispatcher.handle_batch(
        [
            ("mchat/msg/req/emp_alice_001_dev1/s1", encode({"action": "auth.challenge"})),
            ("mchat/msg/req/emp_alice_001_dev1/s2", encode({"action": "auth.challenge"})),
        ]
    )
    assert outcomes[0].replayed and outcomes[0].response == first.response
    assert not outcomes[1].replayed and outcomes[1].response["code"] == 0
    assert AuthChallenge.objects.count() == 2


database_calls: list[int] = []


def _database_gone(request):
    from django.db import OperationalError

    database_calls.append(1)
    raise OperationalError("database is locked")


def test_a_database_outage_answers_a_batch_with_500_at_once(published, alice):
    database_calls.clear()
    routes = {"write": Route("write", "tests.bridge.test_dispatch:_database_gone", "write")}
    dispatcher = Dispatcher(published, routes=routes, limiter=RateLimiter({}))
    messages = [(f"mchat/msg/req/emp_alice_001_dev1/s{n}", encode({"action": "write"})) for n in range(5)]
    outcomes = dispatcher.handle_batch(messages)
    assert [o.response["code"] for o in outcomes] == [500] * 5
    # Once in the batch, once on its own; the other four are not tried (and not waited for).
    assert len(database_calls) == 2
    assert "locked" not in json.dumps([o.response for o in outcomes])


def test_an_answer_echoing_a_lone_surrogate_still_goes_out(dispatcher, published, alice):
    outcome = dispatcher.handle("mchat/msg/req/emp_alice_001_dev1/s1", b'{"action": "a\\ud800b"}')
    assert outcome.response["code"] == 400
    assert published.messages[0].payload["message"] == "未知的 action：a?b"


executions: list[str] = []


def _hook_fails_after_commit(request):
    from django.db import transaction

    executions.append(request.seq_id)
    transaction.on_commit(lambda: 1 / 0)
    return {"done": request.seq_id}


@pytest.mark.django_db(transaction=True)
def test_a_failing_after_commit_hook_does_not_run_a_committed_batch_again(published):
    EmployeeFactory(employee_id="emp_alice_001")
    executions.clear()
    routes = {"work": Route("work", "tests.bridge.test_dispatch:_hook_fails_after_commit", "write")}
    dispatcher = Dispatcher(published, routes=routes, limiter=RateLimiter({}))
    messages = [(f"mchat/msg/req/emp_alice_001_dev1/s{n}", encode({"action": "work"})) for n in range(2)]
    outcomes = dispatcher.handle_batch(messages)
    assert [o.response["code"] for o in outcomes] == [0, 0]
    assert executions == ["s0", "s1"]  # once each: the batch had committed
    assert ProcessedRequest.objects.count() == 2
