"""The bridge's urls.py: every action, the handler that serves it, and its rate-limit class.

Handlers are named by dotted path and imported on first use, like Django's URLconf views. A
route may also name a handler for many requests at once, which the dispatcher prefers when
requests of that action arrive together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Route:
    action: str
    target: str  # "module:function"
    action_class: str  # rate-limit bucket: auth, read, write, message
    # Optional "module:function" serving many requests of this action at once (a list of
    # Request -> a list of data, Deferred or MChatError, in order); see bridge.dispatch.
    many_target: str = ""
    # The many-handler makes its own writes atomic, and a repeat of a request it served is
    # recognised by what it wrote (msg.send_private: the message's unique (client_id, seq_id)
    # finds it, and the answer is rebuilt from the message). A batch that is one run of it
    # then gets no transaction from the dispatcher, and only refusals are recorded.
    many_commits_itself: bool = False
    # Payload fields that name employees the handler looks up (msg.send_private: its
    # recipient). The dispatcher finds them, active ones only, with the requesters in its one
    # identity statement, and hands them over in Request.employees: a send costs no query of
    # its own for its recipient.
    payload_employees: tuple[str, ...] = ()
    # Optional "module:function" that may serve a whole batch of this action before anyone
    # is looked up, from what this process has seen before, in one statement that checks all
    # of it (msg.send_private: senders, recipients and their conversation, no earlier
    # answer). Requests -> a list of data, or None when it cannot (nothing done then: the
    # batch goes the usual way). Its requests carry no employee (Request.employee is None).
    optimistic_target: str = ""

    @cached_property
    def handler(self) -> Callable[..., Any]:
        return _resolve(self.target)

    @cached_property
    def many_handler(self) -> Callable[..., Any] | None:
        return _resolve(self.many_target) if self.many_target else None

    @cached_property
    def optimistic_handler(self) -> Callable[..., Any] | None:
        return _resolve(self.optimistic_target) if self.optimistic_target else None


def _resolve(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def _table(*routes: Route) -> dict[str, Route]:
    return {route.action: route for route in routes}


H = "bridge.handlers"

ROUTES: dict[str, Route] = _table(
    # identity (spec 3.1, 3.2)
    Route("auth.bind", f"{H}.auth:bind", "auth"),
    Route("auth.challenge", f"{H}.auth:challenge", "auth"),
    # organisation (spec 3.3-3.6)
    Route("employee.create", f"{H}.org:employee_create", "write"),
    Route("employee.update", f"{H}.org:employee_update", "write"),
    Route("org.tree", f"{H}.org:org_tree", "read"),
    Route("department.create", f"{H}.org:department_create", "write"),
    Route("department.update", f"{H}.org:department_update", "write"),
    Route("department.delete", f"{H}.org:department_delete", "write"),
    # groups (spec 3.7-3.10, plus group.update / group.list / group.info)
    Route("group.create", f"{H}.groups:group_create", "write"),
    Route("group.dismiss", f"{H}.groups:group_dismiss", "write"),
    Route("group.member_add", f"{H}.groups:group_member_add", "write"),
    Route("group.member_remove", f"{H}.groups:group_member_remove", "write"),
    Route("group.update", f"{H}.groups:group_update", "write"),
    Route("group.list", f"{H}.groups:group_list", "read"),
    Route("group.info", f"{H}.groups:group_info", "read"),
    # messages (spec 3.11-3.13, plus history, conversations, recall)
    Route(
        "msg.send_private",
        f"{H}.messages:send_private",
        "message",
        many_target=f"{H}.messages:send_private_many",
        many_commits_itself=True,
        payload_employees=("to_employee_id",),
        optimistic_target=f"{H}.messages:send_private_known",
    ),
    Route("msg.send_group", f"{H}.messages:send_group", "message"),
    Route("msg.read_ack", f"{H}.messages:read_ack", "message"),
    Route("msg.recall", f"{H}.messages:recall", "message"),
    Route("msg.history", f"{H}.messages:history", "read"),
    Route("conversation.list", f"{H}.messages:conversation_list", "read"),
    # storage and agents (spec 3.14-3.16)
    Route("config.storage", f"{H}.files:config_storage", "read"),
    Route("file.upload_url", f"{H}.files:upload_url", "write"),
    Route("file.download_url", f"{H}.files:download_url", "read"),
    Route("agent.capability_list", f"{H}.agents:capability_list", "read"),
    # agents as colleagues (issue 17): streamed replies, typing, task states, agent cards
    Route("msg.stream_start", f"{H}.streams:stream_start", "message"),
    Route(
        "msg.stream_append",
        f"{H}.streams:stream_append",
        "stream",
        many_target=f"{H}.streams:stream_append_many",
        many_commits_itself=True,  # no database write per delta (messaging.streams)
    ),
    Route("msg.stream_end", f"{H}.streams:stream_end", "message"),
    Route("msg.stream_cancel", f"{H}.streams:stream_cancel", "message"),
    Route("conversation.typing", f"{H}.streams:conversation_typing", "stream"),
    Route("agent.task_update", f"{H}.agent_tasks:task_update", "message"),
    Route("agent.card", f"{H}.agent_tasks:card", "read"),
)
