"""What a client receives, decoded: events from inbox, group, profile, status and system topics.

Every delivery becomes one `Event(kind, topic, data)`:

| kind            | topic                    | data                                                  |
|-----------------|--------------------------|-------------------------------------------------------|
| `message`       | inbox or group           | spec 3.11 / 3.12 payload (`event.message` decodes it) |
| `recall`        | inbox or group           | a message was recalled                                |
| `receipt`       | inbox                    | someone read my message (group: coalesced counts)     |
| `read_position` | inbox                    | my own read position moved (on another device)        |
| `notification`  | inbox                    | spec 3.19 (member_joined, member_removed, ...)        |
| `profile`       | mchat/profile/{id}       | spec 3.18                                             |
| `status`        | mchat/status/{id}        | spec 3.17 (online / offline)                          |
| `system`        | mchat/system/notify      | spec 3.19 broadcast                                   |
| `stream`        | inbox or group           | stream_start / stream_delta / stream_cancel (issue 17)|
| `task_status`   | inbox                    | a task (a private message to an agent) changed state  |
| `typing`        | inbox or group           | someone is typing / an agent's "thinking" status      |
| `connection`    | (none)                   | {"state": "connected"/"disconnected", ...}            |
| `other`         | any                      | a payload this SDK version does not know              |
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

KINDS = (
    "message",
    "recall",
    "receipt",
    "read_position",
    "notification",
    "profile",
    "status",
    "system",
    "stream",
    "task_status",
    "typing",
    "connection",
    "other",
)

INBOX_PREFIX = "mchat/inbox/"
GROUP_PREFIX = "mchat/group/"
STATUS_PREFIX = "mchat/status/"
PROFILE_PREFIX = "mchat/profile/"
SYSTEM_TOPIC = "mchat/system/notify"
RESPONSE_PREFIX = "mchat/msg/resp/"
STREAM_TYPES = ("stream_start", "stream_delta", "stream_cancel")


class Conversation(NamedTuple):
    """A private conversation (with `id` = the peer's employee id) or a group (`id` = group id)."""

    type: str  # "private" | "group"
    id: str

    @property
    def key(self) -> str:
        return f"{self.type}:{self.id}"

    def fields(self) -> dict[str, str]:
        """The request fields that name this conversation (msg.history, msg.read_ack)."""
        if self.type == "group":
            return {"conversation_type": "group", "group_id": self.id}
        return {"conversation_type": "private", "peer_employee_id": self.id}

    @classmethod
    def parse(cls, text: str) -> Conversation:
        """ "private:emp_x", "group:grp_x", or a bare id (grp_... is a group)."""
        kind, sep, ident = text.partition(":")
        if sep and kind in ("private", "group"):
            return cls(kind, ident)
        return cls("group" if text.startswith("grp_") else "private", text)


def content_text(content: Any) -> str:
    """A one-line rendering of message content (spec 1.3: text, image, file)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        kind = content.get("type")
        if kind == "text":
            return str(content.get("text", ""))
        if kind == "image":
            return f"[图片] {content.get('url', '')}"
        if kind == "file":
            return f"[文件] {content.get('name', '')} {content.get('url', '')}".rstrip()
    return json.dumps(content, ensure_ascii=False)


@dataclass(frozen=True)
class Message:
    """A private or group message as delivered (or as msg.history serves it)."""

    msg_id: str
    conversation: Conversation
    from_employee_id: str
    content: Any
    sent_at: str | None
    seq: int | None
    to_employee_id: str | None = None
    group_id: str | None = None
    recalled: bool = False
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def text(self) -> str:
        return content_text(self.content)

    @property
    def is_group(self) -> bool:
        return self.conversation.type == "group"

    @classmethod
    def from_payload(cls, payload: dict, *, me: str) -> Message:
        """`me` is the receiving employee: a private conversation is named by the other side."""
        group_id = payload.get("group_id")
        sender = str(payload.get("from_employee_id", ""))
        if group_id:
            conversation = Conversation("group", str(group_id))
        else:
            to = payload.get("to_employee_id")
            peer = to if sender == me and to else sender
            conversation = Conversation("private", str(peer))
        seq = payload.get("seq")
        return cls(
            msg_id=str(payload.get("msg_id", "")),
            conversation=conversation,
            from_employee_id=sender,
            content=payload.get("content"),
            sent_at=payload.get("sent_at"),
            seq=int(seq) if isinstance(seq, int) else None,
            to_employee_id=payload.get("to_employee_id"),
            group_id=group_id,
            recalled=bool(payload.get("recalled", False)),
            raw=payload,
        )


@dataclass(frozen=True)
class Event:
    kind: str
    topic: str
    data: dict
    message: Message | None = None  # for kind "message"

    @property
    def employee_id(self) -> str | None:
        """For status and profile events: whose status or profile."""
        for prefix in (STATUS_PREFIX, PROFILE_PREFIX):
            if self.topic.startswith(prefix):
                return self.topic[len(prefix) :]
        return None

    def conversation_for(self, me: str) -> Conversation | None:
        """The conversation of a stream, task_status or typing event, seen by employee `me`."""
        if self.message is not None:
            return self.message.conversation
        if self.data.get("group_id"):
            return Conversation("group", str(self.data["group_id"]))
        sender, to = self.data.get("from_employee_id"), self.data.get("to_employee_id")
        if not sender:
            return self.conversation
        return Conversation("private", str(to if sender == me and to else sender))

    @property
    def conversation(self) -> Conversation | None:
        if self.message is not None:
            return self.message.conversation
        if self.data.get("group_id") and self.kind in (
            "recall",
            "receipt",
            "read_position",
        ):
            return Conversation("group", str(self.data["group_id"]))
        peer = self.data.get("peer_employee_id") or self.data.get("reader_id")
        if peer and self.kind in ("receipt", "read_position"):
            return Conversation("private", str(peer))
        return None


def classify(topic: str, payload: Any, *, me: str) -> Event:
    """The event for one delivery (payload already decoded from JSON)."""
    data = payload if isinstance(payload, dict) else {"value": payload}
    if topic.startswith(STATUS_PREFIX):
        return Event("status", topic, data)
    if topic.startswith(PROFILE_PREFIX):
        return Event("profile", topic, data)
    if topic == SYSTEM_TOPIC:
        return Event("system", topic, data)
    if topic.startswith((INBOX_PREFIX, GROUP_PREFIX)):
        kind = data.get("type")
        if "notify_id" in data:
            return Event("notification", topic, data)
        if kind == "recall":
            return Event("recall", topic, data)
        if kind == "read_receipt":
            return Event("receipt", topic, data)
        if kind == "read_position":
            return Event("read_position", topic, data)
        if kind in STREAM_TYPES:
            return Event("stream", topic, data)
        if kind in ("task_status", "typing"):
            return Event(kind, topic, data)
        if "msg_id" in data and "from_employee_id" in data:
            return Event("message", topic, data, Message.from_payload(data, me=me))
    return Event("other", topic, data)
