"""Files (spec 3.14, 3.16; DESIGN §5 "Files"): upload and download grants, what config.storage
tells a client, the check that a message's file is its sender's, and the local backend's
upload and download through Django (messaging.views).

Every object lives under its uploader's prefix (`{employee_id}/...`, messaging.storage.keys).
Downloads are granted to the uploader and to whoever takes part in a conversation with a
(not recalled) message that refers to the object (Message.file_key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.services import audit_record
from mchat.errors import BadRequest, MChatError, NotFound, PermissionDenied
from messaging import storage
from messaging.models import Message, StoredFile, UsedFileUrl
from messaging.storage import keys
from messaging.storage.local import GET, PUT, LocalBackend, UrlGrant
from org.models import Employee


class LengthRequired(MChatError):
    """HTTP only (the local upload view): a PUT without Content-Length."""

    code = 411
    default_message = gettext_lazy("Content-Length 不能为空")


class TooLarge(MChatError):
    """HTTP only (the local upload view): more bytes than the upload was granted for."""

    code = 413
    default_message = gettext_lazy("上传内容过大")


@dataclass(frozen=True)
class UploadGrant:
    stored: StoredFile
    url: str
    headers: dict[str, str]
    expires_at: datetime
    method: str = PUT


@dataclass(frozen=True)
class DownloadGrant:
    stored: StoredFile
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class StorageConfig:
    """config.storage: credentials (S3) or how to reach the local backend, and the rules."""

    backend: str
    prefix: str
    expires_at: datetime
    endpoint: str
    bucket: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None


# --- grants ---------------------------------------------------------------------------------


def file_upload_url(*, actor: Employee, file_name: str, content_type: str, size: int) -> UploadGrant:
    """A one-time PUT URL for a new object under the actor's prefix (spec 3.16)."""
    media_type = keys.content_type_normalise(content_type)
    if media_type is None:
        raise BadRequest(_("content_type 格式不正确：%(type)s") % {"type": content_type[:100]})
    if not keys.content_type_allowed(media_type):
        raise BadRequest(_("content_type 不允许上传：%(type)s") % {"type": media_type})
    limit = settings.MCHAT_FILE_MAX_BYTES
    if size > limit:
        raise BadRequest(_("size 不能超过 %(limit)d 字节") % {"limit": limit})
    backend = storage.current()
    now = timezone.now()
    stored = StoredFile.objects.create(
        key=keys.object_key(employee_id=actor.employee_id, file_name=file_name, at=now),
        owner=actor,
        name=keys.file_name_sanitise(file_name),
        content_type=media_type,
        size=size,
        backend=backend.name,
    )
    expires_at = backend.expiry(now, PUT)
    url = backend.upload_target(key=stored.key, content_type=media_type, size=size, expires_at=expires_at)
    return UploadGrant(stored=stored, url=url, headers={"Content-Type": media_type}, expires_at=expires_at)


def file_download_url(*, actor: Employee, key: str) -> DownloadGrant:
    """A short-lived GET URL (single-use on the local backend) for an object the actor may read."""
    stored = file_access(actor=actor, key=key)
    _confirm_uploaded(stored)
    backend = storage.current()
    expires_at = backend.expiry(timezone.now(), GET)
    url = backend.download_url(
        key=stored.key, name=stored.name, content_type=stored.content_type, expires_at=expires_at
    )
    # Who was let at which file, until when (the URL itself is a bearer secret: never recorded).
    audit_record(
        action="file_download_grant",
        actor=actor,
        target=stored,
        changes={"expires_at": {"before": None, "after": expires_at}},
    )
    return DownloadGrant(stored=stored, url=url, expires_at=expires_at)


def storage_config(*, actor: Employee) -> StorageConfig:
    """S3: STS credentials whose session policy allows only the actor's prefix (spec 3.14).

    Local: there are no credentials to hand out; clients upload and download through
    file.upload_url / file.download_url. `endpoint` is where those URLs point and
    `expires_at` when this answer should be fetched again.
    """
    backend = storage.current()
    prefix = f"{actor.employee_id}/"
    seconds = settings.MCHAT_STORAGE_CREDENTIALS_TTL_SECONDS
    if backend.name == "s3":
        credentials = backend.temporary_credentials(employee_id=actor.employee_id, seconds=seconds)
        return StorageConfig(backend="s3", prefix=prefix, **credentials)
    return StorageConfig(
        backend="local",
        prefix=prefix,
        endpoint=f"{settings.MCHAT_PUBLIC_BASE_URL}/files/",
        expires_at=timezone.now() + timedelta(seconds=seconds),
    )


# --- access ---------------------------------------------------------------------------------


def file_access(*, actor: Employee, key: str) -> StoredFile:
    """The object if the actor may read it: 404 when there is none, 403 when it is not theirs
    and no conversation of theirs refers to it."""
    stored = _stored_file(key, claimant=actor)
    if stored is None:
        raise NotFound(_("文件不存在：%(key)s") % {"key": key})
    if stored.owner_id == actor.pk or _referenced_for(actor, key):
        return stored
    raise PermissionDenied(_("无权访问该文件"))


def file_reference_check(*, sender: Employee, key: str) -> StoredFile:
    """A message may refer to `key` (content.key) only if the sender uploaded it; else 400."""
    if keys.owner_of(key) is None:
        raise BadRequest(_("content.key 格式不正确"))
    stored = _stored_file(key, claimant=sender)
    if stored is None:
        raise BadRequest(_("content.key 对应的文件不存在：%(key)s") % {"key": key})
    if stored.owner_id != sender.pk:
        raise BadRequest(_("content.key 不是发送者上传的文件"))
    try:
        _confirm_uploaded(stored)
    except NotFound:
        raise BadRequest(_("content.key 对应的文件尚未上传完成")) from None
    return stored


def _referenced_for(actor: Employee, key: str) -> bool:
    return (
        # The partial index message_file_key holds messages with a file only: saying so lets a
        # prepared (generic) plan use it.
        Message.objects.filter(file_key=key, recalled_at__isnull=True)
        .exclude(file_key="")
        .filter(
            Q(conversation__employee_low=actor)
            | Q(conversation__employee_high=actor)
            | Q(conversation__group__memberships__employee=actor)
        )
        .exists()
    )


def _stored_file(key: str, *, claimant: Employee) -> StoredFile | None:
    """The registered object; on S3 also one the claimant put under its own prefix with
    config.storage credentials (registered now, if it meets the upload rules)."""
    stored = StoredFile.objects.filter(key=key).first() if isinstance(key, str) else None
    if stored is not None or keys.owner_of(key) != claimant.employee_id:
        return stored
    backend = storage.current()
    if backend.name != "s3":
        return None
    info = backend.object_info(key)
    if info is None:
        return None
    media_type = keys.content_type_normalise(info.content_type or "") or "application/octet-stream"
    if info.size > settings.MCHAT_FILE_MAX_BYTES or not keys.content_type_allowed(media_type):
        raise BadRequest(_("文件大小或类型不符合上传规则：%(key)s") % {"key": key})
    stored, _created = StoredFile.objects.get_or_create(
        key=key,
        defaults={
            "owner": claimant,
            "name": keys.file_name_sanitise(key.rsplit("/", 1)[-1]),
            "content_type": media_type,
            "size": info.size,
            "backend": backend.name,
            "uploaded_at": timezone.now(),
        },
    )
    return stored


def _confirm_uploaded(stored: StoredFile) -> None:
    """NotFound until the object's bytes are there; on S3 they must also be the granted size."""
    if stored.is_uploaded:
        return
    backend = storage.current()
    if backend.name != stored.backend or backend.name == "local":
        # Local uploads are marked by the upload view itself.
        raise NotFound(_("文件尚未上传完成：%(key)s") % {"key": stored.key})
    info = backend.object_info(stored.key)
    if info is None:
        raise NotFound(_("文件尚未上传完成：%(key)s") % {"key": stored.key})
    if info.size != stored.size:
        raise BadRequest(
            _("文件大小 %(got)d 与申请上传时的 size %(size)d 不一致")
            % {"got": info.size, "size": stored.size}
        )
    stored.uploaded_at = timezone.now()
    stored.save(update_fields=["uploaded_at"])


# --- the local backend's HTTP side (messaging.views) ----------------------------------------


def _local_backend() -> LocalBackend:
    backend = storage.current()
    if not isinstance(backend, LocalBackend):
        raise NotFound()
    return backend


def _spend(grant: UrlGrant, now: datetime) -> None:
    """Use up a single-use URL; 403 if it was used before (even concurrently)."""
    try:
        with transaction.atomic():
            UsedFileUrl.objects.create(
                nonce=grant.nonce,
                key=grant.key,
                method=grant.method,
                used_at=now,
                expires_at=grant.expires_at,
            )
    except IntegrityError:
        raise PermissionDenied(_("链接已被使用")) from None


def local_upload_receive(
    *, key: str, token: str, content_type: str, content_length: str | None, read: Callable[[int], bytes]
) -> StoredFile:
    """PUT through an upload URL: exactly the granted type and size, streamed to disk."""
    backend = _local_backend()
    now = timezone.now()
    grant = backend.verify(token, key=key, method=PUT, now=now)
    stored = StoredFile.objects.filter(key=key, backend=backend.name).first()
    if stored is None:
        raise NotFound(_("文件不存在：%(key)s") % {"key": key})
    if stored.is_uploaded:
        raise PermissionDenied(_("链接已被使用"))
    if keys.content_type_normalise(content_type or "") != stored.content_type:
        raise BadRequest(
            _("Content-Type 必须与申请上传时的 content_type 一致：%(type)s") % {"type": stored.content_type}
        )
    if not content_length or not content_length.isdigit():
        raise LengthRequired(_("Content-Length 不能为空"))
    length = int(content_length)
    if length > stored.size:
        raise TooLarge(_("上传内容超过申请的 size（%(size)d 字节）") % {"size": stored.size})
    if length != stored.size:
        raise BadRequest(
            _("Content-Length 必须等于申请上传时的 size（%(size)d 字节）") % {"size": stored.size}
        )
    _spend(grant, now)
    backend.write(key, read, size=stored.size)
    stored.uploaded_at = timezone.now()
    stored.save(update_fields=["uploaded_at"])
    return stored


def local_download_open(*, key: str, token: str) -> tuple[StoredFile, BinaryIO]:
    """GET through a download URL: the stored object, opened, and the URL used up."""
    backend = _local_backend()
    now = timezone.now()
    grant = backend.verify(token, key=key, method=GET, now=now)
    stored = StoredFile.objects.filter(key=key, backend=backend.name, uploaded_at__isnull=False).first()
    if stored is None:
        raise NotFound(_("文件不存在：%(key)s") % {"key": key})
    handle = backend.open(key)
    try:
        _spend(grant, now)
    except BaseException:
        handle.close()
        raise
    return stored, handle


def file_records_purge(*, now: datetime | None = None) -> tuple[int, int]:
    """Forget spent URLs that have expired anyway, and grants never uploaded to (their URLs
    expired a day ago) together with any partial bytes. Returns (urls, files) deleted."""
    now = now or timezone.now()
    urls, _detail = UsedFileUrl.objects.filter(expires_at__lt=now).delete()
    cutoff = now - timedelta(seconds=settings.MCHAT_UPLOAD_URL_TTL_SECONDS) - timedelta(days=1)
    abandoned = StoredFile.objects.filter(uploaded_at__isnull=True, created_at__lt=cutoff)
    backend = storage.current()
    files = 0
    for stored in abandoned.iterator():
        if stored.backend == backend.name and not _confirmed_late(stored, backend):
            backend.delete(stored.key)
            stored.delete()
            files += 1
    return urls, files


def _confirmed_late(stored: StoredFile, backend) -> bool:
    """An S3 object that did arrive but was never checked: keep it (and mark it uploaded)."""
    if backend.name != "s3":
        return False
    try:
        _confirm_uploaded(stored)
    except (NotFound, BadRequest):
        return False
    return True
