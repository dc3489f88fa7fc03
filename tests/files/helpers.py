"""Small helpers shared by the file tests."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, unquote, urlsplit

from messaging import files


def url_parts(url: str) -> tuple[str, str]:
    """(key, token) of a local backend URL."""
    parts = urlsplit(url)
    return unquote(parts.path).removeprefix("/files/"), parse_qs(parts.query)["token"][0]


def upload_in_process(grant: dict, body: bytes):
    """What the upload view does with a PUT, without HTTP (for tests about permissions)."""
    key, token = url_parts(grant["url"])
    return files.local_upload_receive(
        key=key,
        token=token,
        content_type=grant["headers"]["Content-Type"],
        content_length=str(len(body)),
        read=io.BytesIO(body).read,
    )
