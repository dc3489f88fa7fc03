"""The bridge's urls.py: every action, the handler that serves it, and its rate-limit class.

Handlers are named by dotted path and imported on first use, like Django's URLconf views. A
route may also name a BatchExecutor, its strategy for many requests at once, which the
dispatcher prefers when requests of that action arrive together (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from mchat.targets import target_resolve


class BatchExecutor(Protocol):
    """How a route serves requests of its action that arrive together (bridge.dispatch).

    `serve_many`: a list of Request -> a list of data, Deferred or MChatError, in order; or
    None (msg.send_group): requests of the action are served one by one like any other
    route's, and the executor only adds serve_known.
    `commits_itself`: serve_many makes its own writes atomic and a repeat of a request it
    served is recognised by what it wrote (msg.send_private: the message's own (client_id,
    seq_id)); a batch that is one run of it then gets no transaction from the dispatcher, and
    only refusals are recorded.
    `payload_employees`: payload fields naming employees serve_many looks up; the dispatcher
    finds them, active ones only, in its one identity statement (Request.employees).
    `serve_known`: None, or a list of Request (with no employee looked up) -> a list of data,
    or None when it cannot serve them all (nothing done then: the batch goes the usual way);
    for a batch it can serve from what this process has seen, in one statement that checks it.
    """

    payload_employees: tuple[str, ...]
    commits_itself: bool
    serve_known: Callable[[list[Any]], list[dict] | None] | None
    serve_many: Callable[[list[Any]], list[Any]] | None


@dataclass(frozen=True)
class Route:
    action: str
    target: str  # "module:function"
    # Rate-limit bucket: auth, read, write, message, stream. A "read" route writes no row that
    # another request locks: the dispatcher lets it share a transaction (bridge.dispatch._transactions).
    action_class: str
    # Optional "module:name" of the BatchExecutor serving many requests of this action at once.
    batch_target: str = ""

    @cached_property
    def handler(self) -> Callable[..., Any]:
        return target_resolve(self.target)

    @cached_property
    def batch(self) -> BatchExecutor | None:
        return target_resolve(self.batch_target) if self.batch_target else None

    @property
    def serves_many(self) -> bool:
        """Requests of this action that arrive together are served together (serve_many)."""
        return self.batch is not None and self.batch.serve_many is not None


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
    Route("msg.send_private", f"{H}.messages:send_private", "message", f"{H}.messages:SEND_PRIVATE_BATCH"),
    # a lone one from a member seen sending to the group before: one checked statement
    Route("msg.send_group", f"{H}.messages:send_group", "message", f"{H}.messages:SEND_GROUP_BATCH"),
    Route("msg.read_ack", f"{H}.messages:read_ack", "message"),
    Route("msg.recall", f"{H}.messages:recall", "message"),
    Route("msg.history", f"{H}.messages:history", "read"),
    Route("conversation.list", f"{H}.messages:conversation_list", "read"),
    # storage and agents (spec 3.14-3.16)
    Route("config.storage", f"{H}.files:config_storage", "read"),
    Route("file.upload_url", f"{H}.files:upload_url", "write"),
    Route("file.download_url", f"{H}.files:download_url", "read"),
    Route("agent.capability_list", f"{H}.agents:capability_list", "read"),
    Route("audit.list", f"{H}.audit:audit_list", "read"),  # ours: the audit log (org admins)
    # agents as colleagues (issue 17): streamed replies, typing, task states, agent cards
    Route("msg.stream_start", f"{H}.streams:stream_start", "message"),
    # no database write per delta (messaging.streams): its executor commits itself
    Route("msg.stream_append", f"{H}.streams:stream_append", "stream", f"{H}.streams:STREAM_APPEND_BATCH"),
    Route("msg.stream_end", f"{H}.streams:stream_end", "message"),
    Route("msg.stream_cancel", f"{H}.streams:stream_cancel", "message"),
    Route("conversation.typing", f"{H}.streams:conversation_typing", "stream"),
    Route("agent.task_update", f"{H}.agent_tasks:task_update", "message"),
    Route("agent.card", f"{H}.agent_tasks:card", "read"),
)
