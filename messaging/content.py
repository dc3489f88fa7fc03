"""Message content (spec 1.3): what a sender may put in `content`, validated and normalised.

A JSON string is plain text and is kept as a string. An object names its `type` and carries
that type's body fields at the same level:

    "你好"                                            text
    {"type": "text", "text": "你好"}                  text
    {"type": "image", "url": "https://...", "width": 800, "height": 600}
    {"type": "file", "url": "https://...", "name": "报告.pdf", "size": 102400}
    {"type": "file", "key": "emp_x/2025/02/.../报告.pdf", "name": "报告.pdf", "size": 102400}

An image or file may name an uploaded object by `key` (file.upload_url) instead of, or beside,
a `url`; the sending service checks that the key is the sender's (messaging.files).

Only the fields listed here are kept; deliveries and history serve the normalised value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from mchat.errors import BadRequest

TEXT_MAX_CHARS = 10_000
URL_MAX_CHARS = 2048
FILE_NAME_MAX_CHARS = 255
IMAGE_MAX_SIDE = 100_000
FILE_MAX_BYTES = 1 << 40
KEY_MAX_CHARS = 300


@dataclass(frozen=True)
class Content:
    type: str  # Message.ContentType value
    value: str | dict  # stored and delivered as is

    @property
    def file_key(self) -> str | None:
        return self.value.get("key") if isinstance(self.value, dict) else None


def content_parse(raw: Any) -> Content:
    """Validated content, or BadRequest naming the offending field (content, content.url...)."""
    content = _content(raw)
    _check_characters(content.value)
    return content


def _check_characters(value: str | dict) -> None:
    """JSON may carry NUL and lone surrogates ("\u0000", "\ud800"); no database can store
    them as text, and no client could display them."""
    fields = (
        {"content": value}
        if isinstance(value, str)
        else {f"content.{name}": text for name, text in value.items() if isinstance(text, str)}
    )
    for field, text in fields.items():
        if "\x00" in text:
            raise BadRequest(_("%(field)s 不能包含 NUL 字符") % {"field": field})
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(_("%(field)s 包含无效的 Unicode 字符") % {"field": field}) from None


def _content(raw: Any) -> Content:
    if isinstance(raw, str):
        return Content("text", _text(raw, "content"))
    if not isinstance(raw, dict):
        raise BadRequest(_("content 必须是字符串或对象"))
    kind = raw.get("type")
    if kind == "text":
        return Content("text", {"type": "text", "text": _text(raw.get("text"), "content.text")})
    if kind == "image":
        return Content(
            "image",
            {
                "type": "image",
                **_location(raw),
                "width": _count(raw.get("width"), "content.width", minimum=1, maximum=IMAGE_MAX_SIDE),
                "height": _count(raw.get("height"), "content.height", minimum=1, maximum=IMAGE_MAX_SIDE),
            },
        )
    if kind == "file":
        return Content(
            "file",
            {
                "type": "file",
                **_location(raw),
                "name": _file_name(raw.get("name")),
                "size": _count(raw.get("size"), "content.size", minimum=0, maximum=FILE_MAX_BYTES),
            },
        )
    if kind is None:
        raise BadRequest(_("content.type 不能为空"))
    raise BadRequest(_("content.type 必须是 text、image 或 file"))


def _text(value: Any, field: str) -> str:
    if value is None:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    if not isinstance(value, str):
        raise BadRequest(_("%(field)s 必须是字符串") % {"field": field})
    if not value.strip():
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    if len(value) > TEXT_MAX_CHARS:
        raise BadRequest(_("%(field)s 不能超过 %(limit)d 个字符") % {"field": field, "limit": TEXT_MAX_CHARS})
    return value


def _location(raw: dict) -> dict:
    """`url`, or an uploaded object's `key` (with an optional `url` beside it)."""
    key = raw.get("key")
    if key is None:
        return {"url": _url(raw.get("url"))}
    if not isinstance(key, str) or not key or len(key) > KEY_MAX_CHARS:
        raise BadRequest(_("content.key 必须是不超过 %(limit)d 个字符的字符串") % {"limit": KEY_MAX_CHARS})
    if raw.get("url") in (None, ""):
        return {"key": key}
    return {"key": key, "url": _url(raw.get("url"))}


def _url(value: Any) -> str:
    if value is None or value == "":
        raise BadRequest(_("content.url 不能为空"))
    if not isinstance(value, str) or len(value) > URL_MAX_CHARS:
        raise BadRequest(_("content.url 必须是不超过 %(limit)d 个字符的 URL") % {"limit": URL_MAX_CHARS})
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise BadRequest(_("content.url 必须是 http 或 https URL"))
    return value


def _count(value: Any, field: str, *, minimum: int, maximum: int) -> int:
    if value is None:
        raise BadRequest(_("%(field)s 不能为空") % {"field": field})
    # bool is an int in Python but not a size
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadRequest(
            _("%(field)s 必须是 %(min)d 到 %(max)d 之间的整数")
            % {"field": field, "min": minimum, "max": maximum}
        )
    return value


def _file_name(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequest(_("content.name 不能为空"))
    if not isinstance(value, str) or len(value) > FILE_NAME_MAX_CHARS or "/" in value:
        raise BadRequest(
            _("content.name 必须是不含“/”、不超过 %(limit)d 个字符的文件名") % {"limit": FILE_NAME_MAX_CHARS}
        )
    return value
