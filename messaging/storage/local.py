"""The embedded backend: files under MCHAT_STORAGE_DIR, moved through Django's views.

Clients never get the disk: they get URLs of messaging.views signed with the project's secret
(django.core.signing), each carrying the key, the method, its expiry and a random nonce. A URL
works once: the nonce is recorded (unique) when the URL is used.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.translation import gettext as _

from mchat.errors import BadRequest, NotFound, PermissionDenied
from messaging.storage import ObjectInfo, keys

SALT = "mchat.files.url"
CHUNK_BYTES = 64 * 1024
PUT, GET = "PUT", "GET"


@dataclass(frozen=True)
class UrlGrant:
    """What a verified URL allows: one `method` on `key`, once (`nonce`), until `expires_at`."""

    key: str
    method: str
    nonce: str
    expires_at: datetime


def _lifetime(method: str) -> int:
    if method == PUT:
        return settings.MCHAT_UPLOAD_URL_TTL_SECONDS
    return settings.MCHAT_DOWNLOAD_URL_TTL_SECONDS


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


class LocalBackend:
    name = "local"

    def __init__(self, root: Path | None = None):
        self.root = Path(root or settings.MCHAT_STORAGE_DIR).resolve()

    # --- URLs -----------------------------------------------------------------------------

    def signed_url(self, *, key: str, method: str, expires_at: datetime) -> str:
        token = _signer().sign_object(
            {"k": key, "m": method, "x": int(expires_at.timestamp()), "n": secrets.token_hex(16)},
            compress=True,
        )
        path = reverse("messaging:file-object", kwargs={"key": key})
        return f"{settings.MCHAT_PUBLIC_BASE_URL}{path}?{urlencode({'token': token})}"

    def upload_target(self, *, key: str, content_type: str, size: int, expires_at: datetime) -> str:
        return self.signed_url(key=key, method=PUT, expires_at=expires_at)

    def download_url(self, *, key: str, name: str, content_type: str, expires_at: datetime) -> str:
        return self.signed_url(key=key, method=GET, expires_at=expires_at)

    def expiry(self, now: datetime, method: str) -> datetime:
        """Whole seconds, as the URL carries it: the expires_at a client is told is exact."""
        return datetime.fromtimestamp(int(now.timestamp()) + _lifetime(method), tz=UTC)

    def verify(self, token: str, *, key: str, method: str, now: datetime) -> UrlGrant:
        """The grant a URL's token carries, or 403 (tampered, for another key or method, expired)."""
        try:
            # The signing time bounds a token even if its own expiry were ever mis-issued.
            data = _signer().unsign_object(token, max_age=timedelta(seconds=_lifetime(method) + 1))
        except signing.SignatureExpired:
            raise PermissionDenied(_("链接已过期")) from None
        except signing.BadSignature:
            raise PermissionDenied(_("链接签名无效")) from None
        if not isinstance(data, dict) or data.get("k") != key or data.get("m") != method:
            raise PermissionDenied(_("链接签名无效"))
        expires = datetime.fromtimestamp(int(data.get("x", 0)), tz=UTC)
        if now >= expires:
            raise PermissionDenied(_("链接已过期"))
        return UrlGrant(key=key, method=method, nonce=str(data.get("n", "")), expires_at=expires)

    # --- bytes ----------------------------------------------------------------------------

    def path_of(self, key: str) -> Path:
        if not keys.is_issued_key(key):
            raise NotFound(_("文件不存在：%(key)s") % {"key": key})
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise NotFound(_("文件不存在：%(key)s") % {"key": key})
        return path

    def object_info(self, key: str) -> ObjectInfo | None:
        try:
            stat = self.path_of(key).stat()
        except (FileNotFoundError, NotFound):
            return None
        return ObjectInfo(size=stat.st_size, content_type=None)

    def write(self, key: str, read: Callable[[int], bytes], *, size: int) -> int:
        """Store exactly `size` bytes from `read`; never more are read than size + 1.

        Written to a temporary file beside the target and renamed into place, so a key has
        either no file or a complete one.
        """
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        received = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    chunk = read(min(CHUNK_BYTES, size - received + 1))
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > size:
                        raise BadRequest(_("上传内容超过申请的 size（%(size)d 字节）") % {"size": size})
                    out.write(chunk)
            if received != size:
                raise BadRequest(
                    _("上传内容不完整：收到 %(got)d 字节，应为 %(size)d 字节")
                    % {"got": received, "size": size}
                )
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return received

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(key), "rb")
        except FileNotFoundError:
            raise NotFound(_("文件不存在：%(key)s") % {"key": key}) from None

    def delete(self, key: str) -> None:
        try:
            self.path_of(key).unlink(missing_ok=True)
        except NotFound:
            pass
