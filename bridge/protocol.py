"""Requests as they arrive: the request topic and the envelope (spec 1.1, DESIGN §4).

What topics, ids and answers look like is the wire contract, mchat/wire.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.utils.translation import gettext as _

from mchat.errors import BadRequest
from mchat.wire import CLIENT_ID_RE, REQUEST_PREFIX, RESPONSE_PREFIX, SEQ_ID_RE, ClientId


class UnanswerableTopic(Exception):
    """A topic the bridge cannot answer on (no client id to reply to): logged and dropped."""


@dataclass(frozen=True)
class RequestTopic:
    client_id: str
    seq_id: str
    reply_topic: str

    @property
    def employee_id(self) -> str:
        return ClientId.parse(self.client_id).employee_id


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
