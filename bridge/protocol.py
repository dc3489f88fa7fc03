"""The wire contract: topic names, the request envelope and the response shape (spec 1.1)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils.translation import gettext as _

from mchat.errors import BadRequest

REQUEST_PREFIX = "mchat/msg/req/"
RESPONSE_PREFIX = "mchat/msg/resp/"
# "#" rather than "+/+": malformed topics (missing or extra levels) still reach the bridge and
# get a 400 instead of silence.
REQUEST_FILTER = "mchat/msg/req/#"
SHARED_GROUP = "mchat-bridge"
SYSTEM_NOTIFY_TOPIC = "mchat/system/notify"

CLIENT_ID_RE = re.compile(r"^([a-z][a-z0-9_]{2,63})_([A-Za-z0-9-]{1,64})$")
SEQ_ID_RE = re.compile(r"^[!-\"$-*,-.0-~]{1,128}$")  # printable ASCII without "/", "+", "#"


def inbox_topic(employee_id: str) -> str:
    return f"mchat/inbox/{employee_id}"


def group_topic(group_id: str) -> str:
    return f"mchat/group/{group_id}"


def status_topic(employee_id: str) -> str:
    return f"mchat/status/{employee_id}"


def profile_topic(employee_id: str) -> str:
    return f"mchat/profile/{employee_id}"


def response_topic(client_id: str, seq_id: str) -> str:
    return f"{RESPONSE_PREFIX}{client_id}/{seq_id}"


def isoformat_z(moment: datetime) -> str:
    """Spec timestamps: UTC, milliseconds, "Z" (2025-02-03T10:00:00.000Z)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def encode(payload: Any) -> bytes:
    # "replace": JSON may smuggle in lone surrogates ("\ud800"), which UTF-8 cannot carry;
    # an answer that echoes one must still go out.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def response_payload(seq_id: str, code: int, message: str, data: Any) -> dict:
    return {"seq_id": seq_id, "code": code, "message": message, "data": data}


class UnanswerableTopic(Exception):
    """A topic the bridge cannot answer on (no client id to reply to): logged and dropped."""


@dataclass(frozen=True)
class RequestTopic:
    client_id: str
    seq_id: str
    reply_topic: str

    @property
    def employee_id(self) -> str:
        return self.client_id.rsplit("_", 1)[0]


def parse_request_topic(topic: str) -> RequestTopic:
    """Split mchat/msg/req/{client_id}/{seq_id}.

    Raises UnanswerableTopic when no reply topic can be derived, and BadRequest (carrying the
    parsed RequestTopic as `.topic`) when the reply can go to the client but the topic is wrong.
    """
    if not topic.startswith(REQUEST_PREFIX):
        raise UnanswerableTopic(topic)
    rest = topic[len(REQUEST_PREFIX) :]
    levels = rest.split("/")
    client_id = levels[0]
    if not CLIENT_ID_RE.match(client_id):
        raise UnanswerableTopic(topic)
    parsed = RequestTopic(client_id, levels[-1] if len(levels) == 2 else "", RESPONSE_PREFIX + rest)
    if len(levels) != 2:
        raise _topic_error(parsed, _("Topic 层级不正确，应为 mchat/msg/req/{client_id}/{seq_id}"))
    if not parsed.seq_id:
        raise _topic_error(parsed, _("seq_id 不能为空"))
    if not SEQ_ID_RE.match(parsed.seq_id):
        raise _topic_error(parsed, _("seq_id 格式不正确：须为 1-128 个可打印 ASCII 字符"))
    return parsed


def _topic_error(parsed: RequestTopic, message: str) -> BadRequest:
    error = BadRequest(message)
    error.topic = parsed  # type: ignore[attr-defined]
    return error


@dataclass(frozen=True)
class Envelope:
    action: str
    payload: dict


def decode_envelope(raw: bytes, *, seq_id: str, max_bytes: int) -> Envelope:
    if len(raw) > max_bytes:
        raise BadRequest(_("请求过大：payload 超过 %(limit)d 字节") % {"limit": max_bytes})
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(_("payload 不是有效的 UTF-8")) from None
    try:
        payload = json.loads(text)
    except ValueError:
        raise BadRequest(_("payload 不是有效的 JSON")) from None
    if not isinstance(payload, dict):
        raise BadRequest(_("payload 必须是 JSON 对象"))
    action = payload.get("action")
    if action is None:
        raise BadRequest(_("action 不能为空"))
    if not isinstance(action, str):
        raise BadRequest(_("action 必须是字符串"))
    if "seq_id" in payload and payload["seq_id"] != seq_id:
        raise BadRequest(_("payload 中的 seq_id 与 Topic 中的不一致"))
    return Envelope(action=action, payload=payload)
