"""Object keys and what may be uploaded (DESIGN §5 "Files").

A key is `{employee_id}/{yyyy}/{mm}/{32 hex}/{file name}`: the owner's prefix first (what STS
session policies and permission checks rely on), a random level so that names never collide
and keys cannot be guessed, and the file's own (sanitised) name last so downloads keep it.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
import uuid
from datetime import datetime

from django.conf import settings

from mchat.wire import EMPLOYEE_ID

KEY_MAX_CHARS = 300
NAME_MAX_CHARS = 120
_OWNER_RE = re.compile(rf"^({EMPLOYEE_ID})/")
_ISSUED_KEY_RE = re.compile(
    rf"^{EMPLOYEE_ID}/\d{{4}}/\d{{2}}/[0-9a-f]{{32}}/(?!\.)[^/\\\x00-\x1f\x7f]{{1,120}}$"
)
# Letters and digits of any script, and a few harmless marks; everything else becomes "_".
_NAME_UNSAFE = re.compile(r"[^\w.\-()（）\[\]+@,，。、]", re.UNICODE)
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def file_name_sanitise(name: str) -> str:
    """A name that is safe as the last level of a key and as a file on disk."""
    text = unicodedata.normalize("NFC", name).strip()
    text = _NAME_UNSAFE.sub("_", text.replace("/", "_").replace("\\", "_"))
    text = re.sub(r"_{2,}", "_", text).strip("._ ")
    if not text:
        return "file"
    if len(text) > NAME_MAX_CHARS:
        stem, dot, extension = text.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            text = f"{stem[: NAME_MAX_CHARS - len(extension) - 1]}.{extension}"
        else:
            text = text[:NAME_MAX_CHARS]
    return text


def object_key(*, employee_id: str, file_name: str, at: datetime) -> str:
    return f"{employee_id}/{at:%Y}/{at:%m}/{uuid.uuid4().hex}/{file_name_sanitise(file_name)}"


def is_issued_key(key: str) -> bool:
    """The shape object_key produces (required of every key the local backend touches)."""
    return len(key) <= KEY_MAX_CHARS and bool(_ISSUED_KEY_RE.match(key))


def owner_of(key: str) -> str | None:
    """The employee id whose prefix holds `key`, or None for a key of no valid shape.

    Objects uploaded with config.storage credentials may have any name under the prefix, so
    this accepts more than is_issued_key: no control characters, no empty or dot levels.
    """
    if not isinstance(key, str) or not 0 < len(key) <= KEY_MAX_CHARS:
        return None
    match = _OWNER_RE.match(key)
    if match is None or any(ord(c) < 0x20 or c == "\x7f" for c in key):
        return None
    levels = key.split("/")[1:]
    if not levels or any(level in ("", ".", "..") for level in levels):
        return None
    return match.group(1)


def content_type_normalise(value: str) -> str | None:
    """ "Image/PNG; charset=x" -> "image/png"; None when it is not a media type at all."""
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type if _CONTENT_TYPE_RE.match(media_type) else None


def content_type_allowed(media_type: str) -> bool:
    """Exact entries and "major/*" patterns of MCHAT_FILE_ALLOWED_TYPES."""
    return any(
        fnmatch.fnmatchcase(media_type, pattern.lower()) for pattern in settings.MCHAT_FILE_ALLOWED_TYPES
    )
