"""The contract every route in bridge/routes.py keeps (STYLE.md, "Tests"), through the
dispatcher with raw bytes, as a client sends them:

- malformed input -> 400;
- a connection whose employee does not exist, or is deactivated -> 401;
- someone who may not do it, or a target they may not see -> 403 or 404;
- success -> code 0, "ok", and `data` has every field docs/protocol.md documents.

The tests are parametrised over the route table, not over CONTRACTS below: a route added to
bridge/routes.py without an entry in CONTRACTS fails here, saying so.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bridge.routes import ROUTES
from messaging.models import Message
from org.models import Employee
from tests.factories import DepartmentFactory, EmployeeFactory
from tests.files.helpers import upload_in_process

pytestmark = pytest.mark.django_db

RESPONSE_KEYS = {"seq_id", "code", "message", "data"}


@dataclass
class World:
    """A small organisation, built through the dispatcher where a route can build it."""

    send: Callable[..., dict]
    admin: Employee
    alice: Employee  # owner of `group_id`, sender of `private_msg_id`, uploader of `file_key`
    bob: Employee  # member of `group_id`, recipient of `private_msg_id`
    carol: Employee  # in no group, party to no message: the outsider
    gone: Employee  # deactivated
    department_id: str  # with employees
    empty_department_id: str  # nobody in it: deletable
    group_id: str = ""
    private_msg_id: str = ""
    group_msg_id: str = ""
    file_key: str = ""

    def ok(self, employee: Employee, action: str, **fields) -> dict:
        response = self.send(employee, action, **fields)
        assert response["code"] == 0, (action, response)
        return response["data"]

    def challenge(self, employee: Employee) -> dict:
        """A fresh auth.challenge of `employee`, for the sensitive actions (protocol §1.5)."""
        data = self.ok(employee, "auth.challenge")
        return {"challenge_id": data["challenge_id"], "token": data["token"]}


Case = Callable[[World], tuple[Employee, dict]]


@dataclass(frozen=True)
class Contract:
    """One route's contract case.

    valid: who sends which payload (without "action") to succeed.
    malformed: a payload (without "action") the route refuses with 400, or, for a route
        that reads no field, the reason there is none (envelope errors are checked for all).
    outsider: who sends which payload to be refused with 403 or 404, or the reason there is
        no such case (a route every employee may use on their own things).
    fields: the top-level keys of `data` that docs/protocol.md documents (section `doc`).
    nested: for a key holding an object or a list of objects, the documented keys of each.
    """

    doc: str
    valid: Case
    malformed: dict | str
    outsider: Case | str
    fields: frozenset[str]
    nested: dict[str, frozenset[str]] = field(default_factory=dict)


def keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


EVERYONE = "every active employee may; it reads or writes only the caller's own things"
NO_FIELDS = "reads no field of the payload"

MESSAGE_ENTRY = keys("msg_id from_employee_id content sent_at type seq recalled")

CONTRACTS: dict[str, Contract] = {
    "auth.bind": Contract(
        "§4.1",
        valid=lambda w: (w.alice, {"employee_id": w.alice.employee_id}),
        malformed={},
        outsider=lambda w: (w.alice, {"employee_id": w.bob.employee_id}),
        fields=frozenset(),
    ),
    "auth.challenge": Contract(
        "§4.2",
        valid=lambda w: (w.alice, {}),
        malformed=NO_FIELDS,
        outsider=EVERYONE,
        fields=keys("challenge_id token expires_at"),
    ),
    "employee.create": Contract(
        "§5.1",
        valid=lambda w: (w.admin, {"name": "新同事", "department_id": w.department_id}),
        malformed={"name": ""},
        outsider=lambda w: (w.alice, {"name": "新同事"}),
        fields=keys("employee_id name is_ai_agent created_at mqtt_connection"),
        nested={"mqtt_connection": keys("broker_host broker_port use_tls mqtt_username mqtt_password")},
    ),
    "employee.update": Contract(
        "§5.2",
        valid=lambda w: (w.admin, {"employee_id": w.bob.employee_id, "updates": {"title": "工程师"}}),
        malformed={"employee_id": "emp_bob_002", "updates": {"no_such_field": 1}},
        outsider=lambda w: (w.alice, {"employee_id": w.bob.employee_id, "updates": {"name": "改名"}}),
        fields=keys("employee_id updated_at fields"),
    ),
    "org.tree": Contract(
        "§5.3",
        valid=lambda w: (w.alice, {}),
        malformed={"version": "v" * 65},
        outsider=EVERYONE,
        fields=keys("version departments employees"),
        nested={
            "departments": keys("department_id name parent_id sort_order"),
            "employees": keys("employee_id name department_id manager_id is_ai_agent"),
        },
    ),
    "department.create": Contract(
        "§5.4",
        valid=lambda w: (w.admin, {"name": "新部门", "parent_id": w.department_id}),
        malformed={"name": ""},
        outsider=lambda w: (w.alice, {"name": "新部门"}),
        fields=keys("department_id name parent_id sort_order created_at updated_at"),
    ),
    "department.update": Contract(
        "§5.4",
        valid=lambda w: (w.admin, {"department_id": w.department_id, "updates": {"name": "改名部"}}),
        malformed={"department_id": "dept_contract_1"},
        outsider=lambda w: (w.alice, {"department_id": w.department_id, "updates": {"name": "改名部"}}),
        fields=keys("department_id name parent_id sort_order created_at updated_at"),
    ),
    "department.delete": Contract(
        "§5.4",
        valid=lambda w: (w.admin, {"department_id": w.empty_department_id, **w.challenge(w.admin)}),
        malformed={},
        outsider=lambda w: (w.alice, {"department_id": w.empty_department_id, **w.challenge(w.alice)}),
        fields=keys("department_id deleted_at moved_to moved_employee_ids moved_department_ids"),
    ),
    "group.create": Contract(
        "§6.1",
        valid=lambda w: (w.alice, {"name": "新群", "member_ids": [w.bob.employee_id]}),
        malformed={"name": "新群", "member_ids": []},
        outsider=EVERYONE,
        fields=keys("group_id name member_ids created_at owner_id description"),
    ),
    "group.dismiss": Contract(
        "§6.2",
        valid=lambda w: (w.alice, {"group_id": w.group_id, **w.challenge(w.alice)}),
        malformed={},
        outsider=lambda w: (w.carol, {"group_id": w.group_id, **w.challenge(w.carol)}),
        fields=keys("group_id dismissed_at"),
    ),
    "group.member_add": Contract(
        "§6.3",
        valid=lambda w: (w.alice, {"group_id": w.group_id, "member_ids": [w.carol.employee_id]}),
        malformed={"group_id": "grp_x"},
        outsider=lambda w: (w.carol, {"group_id": w.group_id, "member_ids": [w.carol.employee_id]}),
        fields=keys("group_id added_ids current_member_count"),
    ),
    "group.member_remove": Contract(
        "§6.4",
        valid=lambda w: (w.alice, {"group_id": w.group_id, "member_ids": [w.bob.employee_id]}),
        malformed={"group_id": "grp_x", "member_ids": "emp_bob_002"},
        outsider=lambda w: (w.carol, {"group_id": w.group_id, "member_ids": [w.bob.employee_id]}),
        fields=keys("group_id removed_ids current_member_count"),
    ),
    "group.update": Contract(
        "§6.5",
        valid=lambda w: (w.alice, {"group_id": w.group_id, "updates": {"name": "新群名"}}),
        malformed={"group_id": "grp_x", "updates": {"name": ""}},
        outsider=lambda w: (w.carol, {"group_id": w.group_id, "updates": {"name": "新群名"}}),
        fields=keys("group_id updated_fields updated_at"),
    ),
    "group.list": Contract(
        "§6.6",
        valid=lambda w: (w.bob, {}),
        malformed=NO_FIELDS,
        outsider=EVERYONE,
        fields=keys("groups"),
        nested={"groups": keys("group_id name description owner_id created_at role member_count")},
    ),
    "group.info": Contract(
        "§6.7",
        valid=lambda w: (w.bob, {"group_id": w.group_id}),
        malformed={},
        outsider=lambda w: (w.carol, {"group_id": w.group_id}),
        fields=keys("group_id name description owner_id created_at role member_count members"),
        nested={"members": keys("employee_id name role is_ai_agent joined_at")},
    ),
    "msg.send_private": Contract(
        "§7.1",
        valid=lambda w: (w.alice, {"to_employee_id": w.bob.employee_id, "content": "你好"}),
        malformed={"to_employee_id": "emp_bob_002"},
        outsider=lambda w: (w.alice, {"to_employee_id": w.gone.employee_id, "content": "你好"}),
        fields=keys("msg_id to_employee_id sent_at seq"),
    ),
    "msg.send_group": Contract(
        "§7.2",
        valid=lambda w: (w.bob, {"group_id": w.group_id, "content": "大家好"}),
        malformed={"group_id": "grp_x", "content": {"type": "video"}},
        outsider=lambda w: (w.carol, {"group_id": w.group_id, "content": "大家好"}),
        fields=keys("msg_id group_id sent_at seq"),
    ),
    "msg.read_ack": Contract(
        "§7.3",
        valid=lambda w: (w.bob, {"msg_id": w.private_msg_id}),
        malformed={"msg_id": "msg_x", "conversation_type": "channel"},
        outsider=lambda w: (w.carol, {"msg_id": w.private_msg_id}),
        fields=keys("msg_id conversation_type last_read_seq read_at"),
    ),
    "msg.recall": Contract(
        "§7.4",
        valid=lambda w: (w.alice, {"msg_id": w.private_msg_id}),
        malformed={},
        outsider=lambda w: (w.bob, {"msg_id": w.private_msg_id}),
        fields=keys("msg_id seq recalled_at"),
    ),
    "msg.history": Contract(
        "§7.5",
        valid=lambda w: (w.bob, {"conversation_type": "group", "group_id": w.group_id}),
        malformed={"conversation_type": "group", "group_id": "grp_x", "limit": 101},
        outsider=lambda w: (w.carol, {"conversation_type": "group", "group_id": w.group_id}),
        fields=keys("conversation_type group_id messages has_more last_seq last_read_seq"),
        nested={"messages": MESSAGE_ENTRY},
    ),
    "conversation.list": Contract(
        "§7.6",
        valid=lambda w: (w.alice, {}),
        malformed={"limit": 0},
        outsider=EVERYONE,
        fields=keys("conversations next_cursor"),
        nested={
            "conversations": keys(
                "conversation_type name last_seq last_read_seq unread_count last_message last_activity_at"
            )
        },
    ),
    "config.storage": Contract(
        "§8.1",
        valid=lambda w: (w.alice, {}),
        malformed=NO_FIELDS,
        outsider=EVERYONE,
        fields=keys(
            "endpoint bucket region access_key secret_key session_token expires_at "
            "backend prefix max_size allowed_types upload_action download_action"
        ),
    ),
    "file.upload_url": Contract(
        "§8.2",
        valid=lambda w: (w.alice, {"file_name": "报告.pdf", "content_type": "application/pdf", "size": 5}),
        malformed={"content_type": "application/pdf", "size": 5},
        outsider=EVERYONE,
        fields=keys("url method headers key file_name content_type size expires_at"),
    ),
    "file.download_url": Contract(
        "§8.3",
        valid=lambda w: (w.alice, {"key": w.file_key}),
        malformed={},
        outsider=lambda w: (w.carol, {"key": w.file_key}),
        fields=keys("url method key file_name content_type size expires_at"),
    ),
    "agent.capability_list": Contract(
        "§9.1",
        valid=lambda w: (w.alice, {"skill": "订单查询"}),
        malformed={"skill": "长" * 51},
        outsider=EVERYONE,
        fields=keys("skill agent_ids agent_profiles"),
        nested={
            "agent_profiles": keys(
                "employee_id name capabilities skills_badge description owner_id department_id online match"
            )
        },
    ),
    # ours: the audit log (§12), org admins only
    "audit.list": Contract(
        "§12.1",
        valid=lambda w: (w.admin, {"filters": {"action": "group_create"}, "limit": 10}),
        malformed={"limit": "many"},
        outsider=lambda w: (w.alice, {}),
        fields=keys("events next_cursor"),
        nested={
            "events": keys(
                "id occurred_at actor_type actor_id actor_display action target_type target_id "
                "target_display changes source client_id source_user address seq_id"
            )
        },
    ),
    # ours: agents as colleagues (§13)
    "msg.stream_start": Contract(
        "§13.1",
        valid=lambda w: (w.alice, {"to_employee_id": w.bob.employee_id}),
        malformed={},
        outsider=lambda w: (w.carol, {"group_id": w.group_id}),
        fields=keys("msg_id seq sent_at"),
    ),
    "msg.stream_append": Contract(
        "§13.2",
        valid=lambda w: (w.alice, {"msg_id": _open_stream(w), "delta": "文本"}),
        malformed={"msg_id": "msg_x", "delta": 5},
        outsider=lambda w: (w.carol, {"msg_id": _open_stream(w), "delta": "x"}),
        fields=keys("msg_id seq offset length"),
    ),
    "msg.stream_end": Contract(
        "§13.3",
        valid=lambda w: (w.alice, {"msg_id": _open_stream(w)}),
        malformed={"msg_id": "msg_x", "content": ["x"]},
        outsider=lambda w: (w.carol, {"msg_id": _open_stream(w)}),
        fields=keys("msg_id seq length ended_at"),
    ),
    "msg.stream_cancel": Contract(
        "§13.4",
        valid=lambda w: (w.bob, {"msg_id": _open_stream(w)}),
        malformed={},
        outsider=lambda w: (w.carol, {"msg_id": _open_stream(w)}),
        fields=keys("msg_id seq length canceled_at"),
    ),
    "agent.task_update": Contract(
        "§13.6",
        valid=lambda w: (lambda agent, msg_id: (agent, {"msg_id": msg_id, "state": "working"}))(*_task(w)),
        malformed={"msg_id": "msg_x", "state": "paused"},
        outsider=lambda w: (w.carol, {"msg_id": _task(w)[1], "state": "working"}),
        fields=keys("task_id msg_id state status_text updated_at"),
    ),
    "conversation.typing": Contract(
        "§13.7",
        valid=lambda w: (w.alice, {"peer_employee_id": w.bob.employee_id}),
        malformed={},
        outsider=lambda w: (w.carol, {"group_id": w.group_id}),
        fields=keys("expires_at delivered"),
    ),
    "agent.card": Contract(
        "§13.8",
        valid=lambda w: (w.alice, {"employee_id": _agent(w).employee_id}),
        malformed={},
        # Every employee may read any agent's card; an employee who is no agent has none (404).
        outsider=lambda w: (w.carol, {"employee_id": w.bob.employee_id}),
        fields=keys(
            "name description url version capabilities skills defaultInputModes defaultOutputModes "
            "protocolVersion preferredTransport provider mchat"
        ),
        nested={"capabilities": keys("streaming pushNotifications stateTransitionHistory")},
    ),
}


def _open_stream(w: World) -> str:
    """Alice's open stream to Bob, started here when there is none."""
    message = Message.objects.filter(sender=w.alice, stream_state="open").first()
    if message is not None:
        return message.msg_id
    return w.ok(w.alice, "msg.stream_start", to_employee_id=w.bob.employee_id)["msg_id"]


def _agent(w: World) -> Employee:
    """The world's AI agent (created by employee.create in the fixture)."""
    return Employee.objects.filter(is_ai_agent=True, is_active=True).first()


def _task(w: World) -> tuple[Employee, str]:
    """A task for the agent: Alice's private message to it (its answer waits for the agent)."""
    agent = _agent(w)
    w.send(w.alice, "msg.send_private", to_employee_id=agent.employee_id, content="任务")
    return agent, Message.objects.filter(sender=w.alice).latest("pk").msg_id


ACTIONS = sorted(ROUTES)


def contract_for(action: str) -> Contract:
    if action not in CONTRACTS:
        pytest.fail(
            f"route {action!r} in bridge/routes.py has no contract case: add an entry for it to "
            "CONTRACTS in tests/bridge/test_route_contract.py (a valid payload, a malformed one, "
            "an outsider case or why there is none, and the data fields docs/protocol.md documents)"
        )
    return CONTRACTS[action]


@pytest.fixture
def local_files(settings, tmp_path):
    settings.MCHAT_STORAGE = "local"
    settings.MCHAT_STORAGE_DIR = tmp_path / "files"


@pytest.fixture
def world(call, local_files) -> World:
    admin = EmployeeFactory(employee_id="emp_admin_001", name="管理员", is_org_admin=True)
    department = DepartmentFactory(department_id="dept_contract_1", name="契约部")
    empty = DepartmentFactory(department_id="dept_contract_2", name="空部门")
    alice = EmployeeFactory(employee_id="emp_alice_001", name="Alice", department=department)
    bob = EmployeeFactory(employee_id="emp_bob_002", name="Bob", department=department)
    carol = EmployeeFactory(employee_id="emp_carol_003", name="Carol")
    gone = EmployeeFactory(employee_id="emp_gone_004", name="Gone", is_active=False)
    w = World(
        send=call,
        admin=admin,
        alice=alice,
        bob=bob,
        carol=carol,
        gone=gone,
        department_id=department.department_id,
        empty_department_id=empty.department_id,
    )
    w.ok(admin, "employee.create", name="订单助手", is_ai_agent=True, agent={"capabilities": ["订单查询"]})
    w.group_id = w.ok(alice, "group.create", name="项目组", member_ids=[bob.employee_id])["group_id"]
    w.private_msg_id = w.ok(alice, "msg.send_private", to_employee_id=bob.employee_id, content="在吗")[
        "msg_id"
    ]
    w.group_msg_id = w.ok(alice, "msg.send_group", group_id=w.group_id, content="开会")["msg_id"]
    grant = w.ok(alice, "file.upload_url", file_name="a.txt", content_type="text/plain", size=5)
    upload_in_process(grant, b"hello")
    w.file_key = grant["key"]
    return w


def test_a_route_without_a_contract_case_fails_saying_where_to_add_it():
    with pytest.raises(pytest.fail.Exception, match=r"'brand\.new' .* has no contract case: add an entry"):
        contract_for("brand.new")


def test_every_contract_names_a_route():
    stale = sorted(CONTRACTS.keys() - ROUTES.keys())
    assert stale == [], f"CONTRACTS has cases for actions bridge/routes.py no longer serves: {stale}"


@pytest.mark.parametrize("action", ACTIONS)
def test_a_malformed_request_is_400(world, action):
    contract = contract_for(action)
    if isinstance(contract.malformed, str):
        # Nothing of the payload is read: the envelope is all that can be malformed.
        employee, payload = contract.valid(world)
        response = _send(world, employee, action, payload, payload_seq_id="another-seq-id")
        assert (response["code"], response["data"]) == (400, None), response
        assert "seq_id" in response["message"]
        return
    employee, _ = contract.valid(world)
    response = _send(world, employee, action, contract.malformed)
    assert (response["code"], response["data"]) == (400, None), response
    assert re.match(r"[a-z_]+(\.[a-z_]+)? ", response["message"]), f"names no field: {response}"


@pytest.mark.parametrize("action", ACTIONS)
def test_an_unbound_connection_is_401(world, action):
    contract = contract_for(action)
    _, payload = contract.valid(world)
    ghost = Employee(employee_id="emp_ghost_009")  # no such row: a connection nobody is bound to
    for employee in (ghost, world.gone):
        response = _send(world, employee, action, payload)
        assert response["code"] == 401, (employee.employee_id, response)
        assert response["message"] == "连接未绑定到在职员工"


@pytest.mark.parametrize("action", ACTIONS)
def test_an_outsider_is_refused_with_403_or_404_unless_everyone_may(world, action):
    contract = contract_for(action)
    if contract.outsider == EVERYONE:
        # Open to every employee: someone in no group and party to no message is served too.
        _, payload = contract.valid(world)
        response = _send(world, world.carol, action, payload)
        assert response["code"] == 0, response
        return
    assert callable(contract.outsider), f"{action}: an outsider case, or EVERYONE"
    employee, payload = contract.outsider(world)
    response = _send(world, employee, action, payload)
    assert response["code"] in (403, 404), response
    assert response["data"] is None and response["message"], response


@pytest.mark.parametrize("action", ACTIONS)
def test_success_has_the_documented_fields(world, action):
    contract = contract_for(action)
    employee, payload = contract.valid(world)
    seq_id = uuid.uuid4().hex
    response = world.send(employee, action, seq_id=seq_id, **payload)
    assert set(response) == RESPONSE_KEYS
    assert (response["seq_id"], response["code"], response["message"]) == (seq_id, 0, "ok"), response
    data = response["data"]
    assert isinstance(data, dict), response
    missing = sorted(contract.fields - data.keys())
    assert missing == [], f"{action}: data lacks {missing}, documented in docs/protocol.md {contract.doc}"
    for key, documented in contract.nested.items():
        entries = data[key] if isinstance(data[key], list) else [data[key]]
        assert entries, f"{action}: the case must produce at least one {key} entry to check"
        for entry in entries:
            missing = sorted(documented - entry.keys())
            assert missing == [], f"{action}: {key} entry lacks {missing} ({contract.doc})"


def _send(world: World, employee: Employee, action: str, payload: dict, *, payload_seq_id=None) -> dict:
    seq_id = uuid.uuid4().hex
    extra = {"seq_id": payload_seq_id} if payload_seq_id else {}
    raw = json.dumps({"action": action, **payload, **extra}, ensure_ascii=False).encode()
    response = world.send(employee, seq_id=seq_id, raw=raw)
    assert response["seq_id"] == seq_id, response
    return response
