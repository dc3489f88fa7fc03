"""Storage actions: config.storage (spec 3.14), file.upload_url and file.download_url (3.16)."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from bridge.handlers import Request, validate
from mchat.errors import EMPTY_MESSAGES
from mchat.wire import isoformat_z
from messaging import files
from messaging.storage import keys


class UploadUrlInput(serializers.Serializer):
    # Spec 3.16 says file_name; "name" is accepted as well.
    file_name = serializers.CharField(max_length=255, required=False, error_messages=EMPTY_MESSAGES)
    name = serializers.CharField(max_length=255, required=False, error_messages=EMPTY_MESSAGES)
    content_type = serializers.CharField(max_length=255, error_messages=EMPTY_MESSAGES)
    size = serializers.IntegerField(min_value=0, error_messages=EMPTY_MESSAGES)

    def validate(self, attrs):
        if not attrs.get("file_name") and not attrs.get("name"):
            raise serializers.ValidationError({"file_name": _("不能为空")})
        return attrs


class DownloadUrlInput(serializers.Serializer):
    # Spec 3.16: "传入对象 key 或 path".
    key = serializers.CharField(max_length=keys.KEY_MAX_CHARS, required=False, error_messages=EMPTY_MESSAGES)
    path = serializers.CharField(max_length=keys.KEY_MAX_CHARS, required=False, error_messages=EMPTY_MESSAGES)

    def validate(self, attrs):
        if not attrs.get("key") and not attrs.get("path"):
            raise serializers.ValidationError({"key": _("不能为空")})
        return attrs


def config_storage(request: Request) -> dict:
    config = files.storage_config(actor=request.employee)
    return {
        "endpoint": config.endpoint,
        "bucket": config.bucket,
        "region": config.region,
        "access_key": config.access_key,
        "secret_key": config.secret_key,
        "session_token": config.session_token,
        "expires_at": isoformat_z(config.expires_at),
        "backend": config.backend,
        "prefix": config.prefix,
        "max_size": settings.MCHAT_FILE_MAX_BYTES,
        "allowed_types": list(settings.MCHAT_FILE_ALLOWED_TYPES),
        # Uploads through the server's one-time URLs work with either backend.
        "upload_action": "file.upload_url",
        "download_action": "file.download_url",
    }


def upload_url(request: Request) -> dict:
    fields = validate(UploadUrlInput, request.payload)
    grant = files.file_upload_url(
        actor=request.employee,
        file_name=fields.get("file_name") or fields["name"],
        content_type=fields["content_type"],
        size=fields["size"],
    )
    return {
        "url": grant.url,
        "method": grant.method,
        "headers": grant.headers,
        "key": grant.stored.key,
        "file_name": grant.stored.name,
        "content_type": grant.stored.content_type,
        "size": grant.stored.size,
        "expires_at": isoformat_z(grant.expires_at),
    }


def download_url(request: Request) -> dict:
    fields = validate(DownloadUrlInput, request.payload)
    grant = files.file_download_url(actor=request.employee, key=fields.get("key") or fields["path"])
    return {
        "url": grant.url,
        "method": "GET",
        "key": grant.stored.key,
        "file_name": grant.stored.name,
        "content_type": grant.stored.content_type,
        "size": grant.stored.size,
        "expires_at": isoformat_z(grant.expires_at),
    }
