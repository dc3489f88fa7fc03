"""Typed helpers: one method per action of the wire contract (spec 2.1-2.5) and the project's
additions (group.update/list/info, msg.recall/history, conversation.list).

Each returns the response's `data` and raises the typed error of mchat_sdk.errors otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mchat_sdk.events import Conversation, Message


class Actions:
    """Mixed into Client, which provides `request` and `employee_id`."""

    employee_id: str
    request: Callable[..., dict]

    def bind(self) -> dict:
        """auth.bind (spec 3.1): confirm this connection's employee and record the device."""
        return self.request("auth.bind", employee_id=self.employee_id)

    def challenge(self) -> dict:
        """auth.challenge (spec 3.2): {challenge_id, token, expires_at} for a sensitive action."""
        return self.request("auth.challenge")

    def _with_challenge(self, fields: dict) -> dict:
        if "challenge_id" not in fields:
            issued = self.challenge()
            fields = {
                **fields,
                "challenge_id": issued["challenge_id"],
                "token": issued["token"],
            }
        return fields

    def employee_create(
        self,
        name: str,
        *,
        is_ai_agent: bool = False,
        agent: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> dict:
        """employee.create (spec 3.3); `data.mqtt_connection` logs the new employee in.
        `agent`: {owner, description, capabilities, skills_badge, ack_deadline_seconds}."""
        if agent is not None:
            fields["agent"] = dict(agent)
        return self.request("employee.create", name=name, is_ai_agent=is_ai_agent, **fields)

    def employee_update(self, employee_id: str, **updates: Any) -> dict:
        """employee.update (spec 3.4), e.g. employee_update(eid, agent={"capabilities": [...]})."""
        return self.request("employee.update", employee_id=employee_id, updates=updates)

    def org_tree(self, *, version: str | None = None) -> dict:
        """org.tree (spec 3.5); with the version last seen, {"unchanged": true} if nothing changed."""
        return self.request("org.tree", **({"version": version} if version else {}))

    def department_create(self, name: str, *, parent_id: str | None = None, **fields: Any) -> dict:
        return self.request("department.create", name=name, parent_id=parent_id, **fields)

    def department_update(self, department_id: str, **updates: Any) -> dict:
        return self.request("department.update", department_id=department_id, updates=updates)

    def department_delete(self, department_id: str, *, move_to: str | None = None, **fields: Any) -> dict:
        """department.delete: a sensitive action; a fresh challenge is fetched unless given."""
        fields = self._with_challenge(fields)
        if move_to:
            fields["move_to"] = move_to
        return self.request("department.delete", department_id=department_id, **fields)

    def group_create(self, name: str, member_ids: Iterable[str], *, description: str | None = None) -> dict:
        """group.create (spec 3.7). The new group's topic is joined when its notification arrives."""
        opts = {"description": description} if description is not None else {}
        return self.request("group.create", name=name, member_ids=list(member_ids), opts=opts)

    def group_dismiss(self, group_id: str, **fields: Any) -> dict:
        """group.dismiss (spec 3.8): owner only, sensitive (a challenge is fetched unless given)."""
        return self.request("group.dismiss", group_id=group_id, **self._with_challenge(fields))

    def group_member_add(self, group_id: str, member_ids: Iterable[str]) -> dict:
        return self.request("group.member_add", group_id=group_id, member_ids=list(member_ids))

    def group_member_remove(self, group_id: str, member_ids: Iterable[str]) -> dict:
        return self.request("group.member_remove", group_id=group_id, member_ids=list(member_ids))

    def group_leave(self, group_id: str) -> dict:
        return self.group_member_remove(group_id, [self.employee_id])

    def group_update(self, group_id: str, **updates: Any) -> dict:
        return self.request("group.update", group_id=group_id, updates=updates)

    def group_list(self) -> list[dict]:
        return self.request("group.list").get("groups", [])

    def group_info(self, group_id: str) -> dict:
        return self.request("group.info", group_id=group_id)

    def send_private(
        self,
        to_employee_id: str,
        content: Any,
        *,
        seq_id: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """msg.send_private (spec 3.11) -> {msg_id, to_employee_id, sent_at, seq}.

        To an AI agent the answer waits for the agent's acknowledgement (up to its deadline,
        10 s by default) and raises errors.Timeout ("Agent 响应超时") when it does not come;
        the message is kept either way. Pass a `timeout` above the agent's deadline.
        """
        return self.request(
            "msg.send_private",
            seq_id=seq_id,
            timeout=timeout,
            to_employee_id=to_employee_id,
            content=content,
        )

    def send_group(
        self, group_id: str, content: Any, *, seq_id: str | None = None, timeout: float | None = None
    ) -> dict:
        """msg.send_group (spec 3.12) -> {msg_id, group_id, sent_at, seq}."""
        return self.request(
            "msg.send_group", seq_id=seq_id, timeout=timeout, group_id=group_id, content=content
        )

    def send(self, conversation: Conversation | str, content: Any, **options: Any) -> dict:
        """Send into a conversation: Conversation("private", eid) / ("group", gid) or a bare id."""
        target = Conversation.parse(conversation) if isinstance(conversation, str) else conversation
        if target.type == "group":
            return self.send_group(target.id, content, **options)
        return self.send_private(target.id, content, **options)

    def read_ack(self, message: Message | str, conversation: Conversation | None = None) -> dict:
        """msg.read_ack (spec 3.13): everything up to this message has been read."""
        if isinstance(message, Message):
            return self.request("msg.read_ack", msg_id=message.msg_id, **message.conversation.fields())
        return self.request(
            "msg.read_ack",
            msg_id=message,
            **(conversation.fields() if conversation else {}),
        )

    def recall(self, msg_id: str) -> dict:
        return self.request("msg.recall", msg_id=msg_id)

    def history(
        self,
        conversation: Conversation | str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> dict:
        """msg.history: {messages, has_more, last_seq, last_read_seq} in ascending seq."""
        target = Conversation.parse(conversation) if isinstance(conversation, str) else conversation
        fields: dict[str, Any] = {**target.fields(), "limit": limit}
        if before_seq is not None:
            fields["before_seq"] = before_seq
        if after_seq is not None:
            fields["after_seq"] = after_seq
        return self.request("msg.history", **fields)

    def messages(self, conversation: Conversation | str, **options: Any) -> list[Message]:
        """msg.history decoded into Message objects."""
        return [
            Message.from_payload(m, me=self.employee_id)
            for m in self.history(conversation, **options)["messages"]
        ]

    def conversation_list(self, *, limit: int = 50, cursor: str | None = None) -> dict:
        """conversation.list: {conversations, next_cursor}, most recently active first."""
        return self.request("conversation.list", limit=limit, **({"cursor": cursor} if cursor else {}))

    def config_storage(self) -> dict:
        return self.request("config.storage")

    def file_upload_url(self, file_name: str, content_type: str, size: int, **fields: Any) -> dict:
        return self.request(
            "file.upload_url",
            file_name=file_name,
            content_type=content_type,
            size=size,
            **fields,
        )

    def file_download_url(self, **fields: Any) -> dict:
        return self.request("file.download_url", **fields)

    # --- agents as colleagues (issue 17) -------------------------------------------------------

    def stream_start(self, conversation: Conversation | str, *, reply_to: str | None = None) -> dict:
        """msg.stream_start -> {msg_id, seq, sent_at}: a streamed message takes its place now."""
        target = Conversation.parse(conversation) if isinstance(conversation, str) else conversation
        fields: dict[str, Any] = (
            {"group_id": target.id} if target.type == "group" else {"to_employee_id": target.id}
        )
        if reply_to:
            fields["reply_to"] = reply_to
        return self.request("msg.stream_start", **fields)

    def stream_append(self, msg_id: str, delta: str, *, seq_id: str | None = None, retries: int = 5) -> dict:
        """msg.stream_append -> {msg_id, seq, offset, length}. An agent that appends faster
        than its rate limit is slowed down, not failed: a 429 (or a timeout) is retried with
        the same seq_id, which the server appends once."""
        return self.request("msg.stream_append", seq_id=seq_id, retries=retries, msg_id=msg_id, delta=delta)

    def stream_end(self, msg_id: str, *, content: str | None = None) -> dict:
        """msg.stream_end: stored once and delivered as a message with `stream: true`."""
        return self.request("msg.stream_end", msg_id=msg_id, **({"content": content} if content else {}))

    def stream_cancel(self, msg_id: str) -> dict:
        """msg.stream_cancel: a recipient (or a group's owner/admin) stops someone's stream."""
        return self.request("msg.stream_cancel", msg_id=msg_id)

    def task_update(self, msg_id: str, state: str, *, status_text: str | None = None) -> dict:
        """agent.task_update: working / input-required / completed / failed (the agent), or
        canceled (the task's sender)."""
        fields = {"status_text": status_text} if status_text else {}
        return self.request("agent.task_update", msg_id=msg_id, state=state, **fields)

    def typing(
        self,
        conversation: Conversation | str,
        *,
        status_text: str = "",
        active: bool = True,
        ttl_seconds: int | None = None,
    ) -> dict:
        """conversation.typing -> {expires_at, delivered}; agents may show a status up to 120 s."""
        target = Conversation.parse(conversation) if isinstance(conversation, str) else conversation
        fields: dict[str, Any] = (
            {"group_id": target.id} if target.type == "group" else {"peer_employee_id": target.id}
        )
        if status_text:
            fields["status_text"] = status_text
        if not active:
            fields["active"] = False
        if ttl_seconds is not None:
            fields["ttl_seconds"] = ttl_seconds
        return self.request("conversation.typing", **fields)

    def agent_card(self, employee_id: str) -> dict:
        """agent.card: the agent's A2A-style Agent Card."""
        return self.request("agent.card", employee_id=employee_id)

    def agent_capability_list(self, skill: str | None = None, *, department_id: str | None = None) -> dict:
        """agent.capability_list (spec 3.15): {skill, agent_ids, agent_profiles}, best matches and
        online agents first."""
        fields = {"skill": skill} if skill else {}
        if department_id:
            fields["department_id"] = department_id
        return self.request("agent.capability_list", **fields)
